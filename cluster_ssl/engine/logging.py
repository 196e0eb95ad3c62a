"""Where metrics go: the console, ``OUT/metrics.jsonl`` and Weights & Biases.

Only rank 0 logs. W&B is imported lazily and only when asked for; ``offline`` writes a run
directory under ``OUT/wandb`` that ``wandb sync`` can upload later and never touches the
network.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cluster_ssl.runtime.choices import WANDB_MODES
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.files import append_line, write_bytes


class RunLogger:
    """Writes one JSON line per logged event and mirrors it to W&B."""

    def __init__(
        self,
        out_dir: Path,
        *,
        enabled: bool,
        wandb_mode: str = "disabled",
        config: dict[str, Any] | None = None,
        group: str | None = None,
        name: str | None = None,
    ) -> None:
        if wandb_mode not in WANDB_MODES:
            raise UserError(f"unknown --wandb {wandb_mode!r}; use one of {', '.join(WANDB_MODES)}")
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self._wandb = None
        if enabled and wandb_mode != "disabled":
            self._wandb = _start_wandb(out_dir, wandb_mode, config or {}, group, name)

    def log(self, metrics: dict[str, Any], *, step: int, stage: str) -> None:
        if not self.enabled:
            return
        record = {"stage": stage, "step": step, **{k: _plain(v) for k, v in metrics.items()}}
        append_line(json.dumps(record), self.path)
        if self._wandb is not None:
            scalars = {f"{stage}/{k}": v for k, v in record.items() if isinstance(v, (int, float))}
            self._wandb.log(scalars)

    def log_histogram(self, name: str, values: np.ndarray, *, stage: str) -> None:
        """Cluster-size histograms and the like (W&B only; the JSON line holds the counts)."""
        if self._wandb is not None:
            import wandb

            self._wandb.log({f"{stage}/{name}": wandb.Histogram(np_histogram=_bar(values))})

    @property
    def wandb_enabled(self) -> bool:
        return self._wandb is not None

    def log_report(self, report_dir: Path, sizes: list[int]) -> None:
        """The report's pictures to W&B: ``clusters/NN.png`` as images and as a table of
        (cluster, size, grid), and ``embedding.png``."""
        if self._wandb is None:
            return
        import wandb

        table = wandb.Table(columns=["cluster", "size", "most confident images"])
        grids = {}
        for cluster, size in enumerate(sizes):
            grid = report_dir / "clusters" / f"{cluster:02d}.png"
            image = wandb.Image(str(grid)) if grid.is_file() else None
            table.add_data(cluster, size, image)
            if image is not None:
                grids[f"clusters/{cluster:02d}"] = image
        logged: dict[str, Any] = {"report/clusters": table, **grids}
        if (report_dir / "embedding.png").is_file():
            logged["report/embedding"] = wandb.Image(str(report_dir / "embedding.png"))
        self._wandb.log(logged)

    def forget(self, replaced: Callable[[dict[str, Any]], bool]) -> None:
        """Drop the logged events a resumed run replays (``replaced(event)`` is true for
        them) and lines a killed write left incomplete, so metrics.jsonl reads as one run."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and not replaced(event):
                kept.append(line)
        write_bytes("".join(line + "\n" for line in kept).encode(), self.path)

    def echo(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        if self._wandb is not None:
            if summary:
                for key, value in summary.items():
                    if isinstance(value, (int, float, str)):
                        self._wandb.summary[key] = value
            self._wandb.finish()
            self._wandb = None


def _bar(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(counts, dtype=float)
    return counts, np.arange(len(counts) + 1, dtype=float)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "item") and getattr(value, "numel", lambda: 0)() == 1:
        return value.item()
    return value


def _start_wandb(out_dir: Path, mode: str, config: dict, group: str | None, name: str | None):
    try:
        import wandb
    except ImportError:
        raise UserError("--wandb needs the wandb package: pip install wandb") from None
    os.environ.setdefault("WANDB_SILENT", "true")
    out_dir.mkdir(parents=True, exist_ok=True)
    id_file = out_dir / "wandb-run-id"  # a resumed run continues the same W&B run

    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
    id_file.write_text(run_id + "\n")
    return wandb.init(
        project=os.environ.get("WANDB_PROJECT", "cluster-ssl"),
        dir=str(out_dir),
        mode=mode,
        config=config,
        group=group,
        name=name,
        job_type=group.split("/")[0] if group else None,
        id=run_id,
        resume="allow",
        reinit=True,
    )

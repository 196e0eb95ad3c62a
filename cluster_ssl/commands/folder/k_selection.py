"""``cluster --k auto``: k chosen on the trained embedding, kept in ``k_selection.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cluster_ssl.cluster.choose_k import choose_k
from cluster_ssl.commands.trained import load_trained_stage
from cluster_ssl.methods.base import StageContext
from cluster_ssl.runtime.files import write_json

#: a run directory's record of the k chosen after training, which its predictions use
K_SELECTION_FILE = "k_selection.json"


def choose_run_k(
    out: Path, device: torch.device, k_range: tuple[int, int], num_workers: int = 2
) -> dict[str, Any]:
    """Choose k in ``k_range`` on the trained embedding (:func:`choose_k`), record it in
    ``k_selection.json`` (later predictions use it) and return the scores."""
    trained = load_trained_stage(out)
    dataset = trained.prepared.eval_dataset
    method = trained.stage.method.to(device).eval()
    ctx = StageContext(
        dataset,
        device,
        trained.record["seed"],
        num_workers=num_workers,
        network=method.network(),
        pass_batch_size=trained.pass_batch_size,
    )
    with torch.no_grad():
        embedding = method.embedding(ctx).cpu().numpy()
    best, scores = choose_k(embedding, range(k_range[0], k_range[1] + 1), seed=ctx.seed)
    selection = {"criterion": "mean cosine silhouette of k-means", "k": best, "scores": scores}
    write_json(selection, out / K_SELECTION_FILE)
    return selection


def chosen_k(run: Path) -> int | None:
    """The k a ``--k auto`` run chose after training, None for runs that chose none.
    ``run`` is the run directory or one of its stage checkpoints."""
    run = Path(run)
    path = (run if run.is_dir() else run.parent.parent) / K_SELECTION_FILE
    return json.loads(path.read_text())["k"] if path.is_file() else None

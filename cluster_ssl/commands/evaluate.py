"""``cluster-ssl eval``: score a stage checkpoint or a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cluster_ssl.commands.folder.k_selection import chosen_k
from cluster_ssl.commands.trained import load_trained_stage
from cluster_ssl.eval.metrics import evaluate_clustering
from cluster_ssl.runtime.device import resolve_device
from cluster_ssl.runtime.lock import lock_directory


def evaluate_checkpoint(
    path: Path,
    device_spec: str = "auto",
    data_root: str | None = None,
    num_workers: int = 2,
    split: str | None = None,
    report: Path | None = None,
    download: bool = False,
) -> dict[str, Any]:
    """Score the method stored in a stage checkpoint (or a run directory's last stage) on
    the run's evaluation split, or on ``split``; ``report`` also writes a report directory
    there (CSV, cluster grids, embedding map, and the clusters matched to classes);
    ``download`` fetches the data first if it is missing."""
    trained = load_trained_stage(
        path, data_root, split, download=download, num_clusters=chosen_k(path)
    )
    prediction = trained.predict(resolve_device(device_spec), num_workers)
    prepared = trained.prepared
    metrics = evaluate_clustering(
        prepared.eval_dataset.labels, prediction.labels, prediction.num_clusters
    )
    result = {
        "checkpoint": str(trained.path),
        "stage": trained.stage.name,
        "epoch": trained.checkpoint["epoch"],
        "step": trained.checkpoint["step"],
        "recipe": trained.record["recipe"],
        "dataset": trained.record["dataset"],
        "split": prepared.config.eval_split or prepared.config.split,
        "num_images": len(prepared.eval_dataset),
        "num_clusters": prepared.num_clusters,
        **metrics,
    }
    if report is not None:
        from cluster_ssl.report.run_report import sample_names, write_report_dir

        scores = {k: f"{metrics[k]:.4f}" for k in ("acc", "nmi", "ari") if k in metrics}
        with lock_directory(report, "--report"):
            write_report_dir(
                Path(report),
                prepared.eval_dataset,
                prediction,
                title=f"{result['recipe']} on {result['dataset']} ({result['split']} split)",
                facts={
                    "checkpoint": f"{trained.path} (stage {trained.stage.name!r}, epoch "
                    f"{result['epoch']})",
                    "images": str(result["num_images"]),
                    **{name.upper(): value for name, value in scores.items()},
                },
                names=sample_names(prepared.eval_dataset),
            )
    return result

"""What ``cluster`` writes after training: assignments, grids, map, page, skipped files."""

from __future__ import annotations

from pathlib import Path

from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.commands.folder.k_selection import K_SELECTION_FILE, chosen_k
from cluster_ssl.commands.train import keep_centres
from cluster_ssl.commands.trained import load_trained_stage
from cluster_ssl.report.assignments import write_skipped
from cluster_ssl.report.run_report import sample_names, write_report_dir
from cluster_ssl.runtime.files import read_json


def write_outputs(out: Path, folder: Path, device, num_workers: int = 2) -> Prediction:
    """Predict with the run's last stage and write the CSV, grids, map and page."""
    trained = load_trained_stage(out, num_clusters=chosen_k(out))
    dataset = trained.prepared.eval_dataset
    prediction = trained.predict(device, num_workers)
    keep_centres(trained.stage.method, prediction, trained.path)  # k may have changed
    facts = {}
    k_scores = None
    chosen = out / K_SELECTION_FILE
    if chosen.is_file():
        selection = read_json(chosen, ("k", "scores"), "run cluster --k auto --resume again")
        k_scores = {int(k): float(score) for k, score in selection["scores"].items()}
        low, high = min(map(int, selection["scores"])), max(map(int, selection["scores"]))
        facts["k chosen"] = f"{selection['k']} in {low}-{high} (highest silhouette)"
    write_skipped(out / "skipped.txt", dataset.skipped, folder)
    write_report_dir(
        out,
        dataset,
        prediction,
        title=f"{folder.name}: {prediction.num_clusters} clusters",
        facts={
            "folder": str(folder),
            "images clustered": str(len(prediction.labels)),
            "files skipped": str(len(dataset.skipped)),
            "method": trained.record["recipe"],
            **facts,
        },
        names=sample_names(dataset, folder),
        extra_links={"skipped.txt": "skipped.txt"},
        k_scores=k_scores,
    )
    return prediction

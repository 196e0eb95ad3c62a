"""W&B in offline mode: a run directory is written and the network is never needed."""

import json

import pytest

from cluster_ssl.cli import main

pytestmark = pytest.mark.slow


def test_offline_wandb_writes_a_run_directory_and_resume_continues_it(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # any network use would fail
    out = tmp_path / "run"
    args = [
        "train",
        "dec",
        "--dataset",
        "digits",
        "--out",
        str(out),
        "--wandb",
        "offline",
        "--epochs",
        "1",
        "--set",
        "maxiter=10",
        "--set",
        "kmeans_restarts=1",
        "--no-progress",
    ]
    assert main(args) == 0, capsys.readouterr().err
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")), "the offline run holds no history file"
    assert json.loads((out / "run.json").read_text())["recipe"] == "dec"

    # the dashboard's pictures: a grid per used cluster, the embedding map, the table
    media = runs[0] / "files" / "media"
    summary = json.loads((out / "summary.json").read_text())
    images = list((media / "images").rglob("*.png"))
    assert len(images) >= summary["clusters_used"] + 1
    assert list((media / "table").rglob("*.table.json"))
    assert (out / "report" / "report.html").is_file()

    run_id = (out / "wandb-run-id").read_text().strip()
    assert runs[0].name.endswith(run_id)
    assert (
        main(["train", "--out", str(out), "--resume", "--wandb", "offline", "--no-progress"]) == 0
    )
    assert all(r.name.endswith(run_id) for r in (out / "wandb").glob("offline-run-*"))

"""A run killed mid-epoch (and mid-pipeline) and resumed ends exactly where an
uninterrupted run with the same seed ends."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cluster_ssl.cli import main
from cluster_ssl.engine.stages import with_earlier_seconds

pytestmark = pytest.mark.slow

ARGS = [
    "train",
    "dec",
    "--dataset",
    "digits",
    "--epochs",
    "8",
    "--no-progress",
    "--set",
    "maxiter=60",
    "--set",
    "update_interval=10",
    "--set",
    "tol=0",
    "--set",
    "kmeans_restarts=2",
    "--set",
    "batch_size=64",
]


def start(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cluster_ssl.cli", *ARGS, "--out", str(out), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill_when(process: subprocess.Popen, path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def final_weights(out: Path) -> dict:
    return torch.load(out / "stages" / "02-cluster.pt", weights_only=False)["method"]


def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    reference = tmp_path / "reference"
    assert main([*ARGS, "--out", str(reference)]) == 0

    out = tmp_path / "killed"
    # first kill: in the pretraining stage, just after its first checkpoint
    kill_when(start(out), out / "stages" / "01-pretrain.pt")
    assert not (out / "summary.json").exists()
    # second kill: in the clustering stage, after it checkpointed once
    kill_when(start(out, "--resume"), out / "stages" / "02-cluster.pt")
    assert not (out / "summary.json").exists()
    finished = start(out, "--resume")
    _, stderr = finished.communicate(timeout=300)
    assert finished.returncode == 0, stderr.decode()[-2000:]
    assert "resuming stage 'cluster'" in stderr.decode()

    expected = json.loads((reference / "summary.json").read_text())
    got = json.loads((out / "summary.json").read_text())
    for key in ("acc", "nmi", "ari", "clusters_used", "cluster_sizes"):
        assert got[key] == expected[key], key
    # every stage is reported, with its training time in the earlier invocations
    untimed = [{k: v for k, v in r.items() if "seconds" not in k} for r in got["stages"]]
    assert untimed == [{k: v for k, v in r.items() if k != "seconds"} for r in expected["stages"]]
    pretrain, cluster = got["stages"]
    assert pretrain["seconds"] == 0 and pretrain["seconds_before_resume"] > 0  # loaded
    assert cluster["seconds"] > 0 and cluster["seconds_before_resume"] > 0  # resumed mid-stage
    earlier = pretrain["seconds_before_resume"] + cluster["seconds_before_resume"]
    assert got["seconds_with_earlier_invocations"] == round(got["seconds"] + earlier, 2)
    assert "seconds_with_earlier_invocations" not in expected
    want, have = final_weights(reference), final_weights(out)
    assert want.keys() == have.keys()
    for key in want:
        if isinstance(want[key], torch.Tensor):
            assert torch.equal(want[key], have[key]), key
    assert not list(out.glob("**/*.tmp")), "a temporary checkpoint was left behind"


def test_time_before_a_resume_is_unknown_for_checkpoints_that_did_not_record_it():
    recorded = [{"seconds": 0.0, "seconds_before_resume": 30.0}, {"seconds": 5.0}]
    assert with_earlier_seconds(12.5, recorded) == 42.5
    old_checkpoint = [{"seconds": 0.0, "seconds_before_resume": None}, {"seconds": 5.0}]
    assert with_earlier_seconds(12.5, old_checkpoint) is None


def test_resume_refuses_a_different_recipe(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"recipe": "dec", "dataset": "digits"}))
    assert main(["train", "idec", "--out", str(out), "--resume"]) == 2
    assert "is a dec run on digits" in capsys.readouterr().err


def test_resume_without_a_run_says_so(tmp_path, capsys):
    assert main(["train", "dec", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "holds no run" in capsys.readouterr().err


def test_checkpoint_every_n_epochs_and_at_the_end_of_each_stage(tmp_path, monkeypatch):
    from cluster_ssl.engine import trainer

    saved: list[tuple[str, int]] = []
    real_save = trainer.save_checkpoint

    def recording_save(state: dict, path: Path) -> None:
        saved.append((state["stage"], state["epoch"]))
        real_save(state, path)

    monkeypatch.setattr(trainer, "save_checkpoint", recording_save)
    torch.set_num_threads(1)
    sparse, every = tmp_path / "sparse", tmp_path / "every"
    assert main([*ARGS, "--out", str(sparse), "--checkpoint-every", "3"]) == 0
    # 8 pretraining epochs: 3, 6 and the last; clustering stops at 60 steps in its 3rd epoch
    assert saved == [("pretrain", 3), ("pretrain", 6), ("pretrain", 8), ("cluster", 3)]
    assert main([*ARGS, "--out", str(every)]) == 0
    assert saved[4:] == [("pretrain", e) for e in range(1, 9)] + [("cluster", e) for e in (1, 2, 3)]
    got, want = (json.loads((run / "summary.json").read_text()) for run in (sparse, every))
    assert (got["acc"], got["cluster_sizes"]) == (want["acc"], want["cluster_sizes"])


def test_checkpoint_every_must_be_positive(tmp_path, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "run"), "--checkpoint-every", "0"]) == 2
    assert "--checkpoint-every must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_refuses_a_checkpoint_trained_with_other_settings(tmp_path, capsys):
    """A preset changed between versions must not change a run half-way."""
    from cluster_ssl.engine.checkpoint import load_checkpoint, save_checkpoint

    out = tmp_path / "run"
    torch.set_num_threads(1)
    assert main([*ARGS, "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["update_interval"] == 10 and config["pretrain"]["lr"] > 0  # the resolved settings
    first = out / "stages" / "01-pretrain.pt"
    checkpoint = load_checkpoint(first)
    checkpoint["run"]["config"]["pretrain"]["lr"] = 123.0  # as if the preset had said so
    save_checkpoint(checkpoint, first)
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{first} trained with other settings" in err and "pretrain.lr 123.0 -> " in err

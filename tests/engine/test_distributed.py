"""Two processes under torchrun (gloo on CPU): the run completes and only rank 0 writes."""

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

pytestmark = pytest.mark.slow


def test_torchrun_two_processes_on_digits(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "cluster_ssl.cli",
        "train",
        "dec",
        "--dataset",
        "digits",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--set",
        "maxiter=20",
        "--set",
        "update_interval=5",
        "--set",
        "kmeans_restarts=2",
        "--no-progress",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("ACC ") == 1, "only rank 0 reports"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["num_images"] == 1797
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "config.json",
        "metrics.jsonl",
        "run.json",
        "stages",
        "summary.json",
    ]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    repeats = Counter((r["stage"], r["step"], r.get("epoch")) for r in records)
    assert max(repeats.values()) == 1, "a rank other than 0 wrote metrics"
    # the batch of 256 is the global one: each rank takes 128 of its 899 images -> 7 steps
    pretrain = [r for r in records if r["stage"] == "pretrain" and "epoch" in r]
    assert [r["step"] for r in pretrain] == [7, 14]

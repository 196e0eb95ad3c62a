"""tools/gpu_check.py, the one prepared check of the CUDA path, run at its --tiny sizes on
the CPU: every check passes or is skipped, and every recipe is trained by the correctness
check (so a recipe added later is checked on the GPU too)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from recipes import RECIPES

REPO = Path(__file__).resolve().parents[2]


def test_tiny_cpu_run_passes_every_check(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "gpu_check.py"),
            str(out),
            "--device",
            "cpu",
            "--tiny",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads((out / "gpu_check.json").read_text())
    failed = {c["name"]: c["error"] for c in report["checks"] if c["passed"] is False}
    assert done.returncode == 0, (failed, done.stdout[-3000:], done.stderr[-3000:])
    assert not failed
    for check in report["checks"]:
        assert check["passed"] is True or check["skipped"], check
        assert set(check) >= {"name", "passed", "seconds", "numbers", "error"}
    names = [check["name"] for check in report["checks"]]
    assert [n for n in names if n.startswith("correctness:")] == [
        f"correctness:{name}" for name in RECIPES.names()
    ]
    for prefix in (
        "environment",
        "resume:",
        "precision:bf16",
        "options:",
        "paper-network:",
        "speed:simclr",
        "refresh:",
        "kmeans-knn:",
        "accuracy:",
    ):
        assert any(name.startswith(prefix) for name in names), prefix
    speed = next(c for c in report["checks"] if c["name"] == "speed:simclr")["numbers"]
    assert speed["ours_img_s"] > 0 and speed["bare_img_s"] > 0 and speed["lightly_style_img_s"] > 0
    resume = next(c for c in report["checks"] if c["name"] == "resume:kill-and-resume")["numbers"]
    assert resume["bitwise_equal"] and resume["killed_at_epoch"] < resume["epochs"]
    table = (out / "gpu_check.md").read_text()
    assert all(f"| {name} |" in table for name in names)
    assert done.stdout.strip().splitlines()[-1].startswith("gpu_check: ")

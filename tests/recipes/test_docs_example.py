"""docs/EXTENDING.md's example recipe keeps working: its loss matches the formula computed
by hand, its method trains and the loss falls, and registered as a recipe it runs from the
command line like the built-in ones."""

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cluster_ssl.cli import main
from cluster_ssl.commands.prepare import prepare
from recipes import RECIPES

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "align_uniform.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("align_uniform", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture
def registered(example, monkeypatch):
    monkeypatch.setitem(RECIPES._items, "align_uniform", example.RECIPE)
    return example


def test_the_loss_is_the_formula(example):
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    a = [v / v.norm() for v in z_a]
    b = [v / v.norm() for v in z_b]
    align = sum(float((x - y).pow(2).sum()) for x, y in zip(a, b, strict=True)) / 4
    points = a + b
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]
    uniform = math.log(
        sum(math.exp(-2 * float((points[i] - points[j]).pow(2).sum())) for i, j in pairs)
        / len(pairs)
    )
    assert example.align_uniform_loss(z_a, z_b).item() == pytest.approx(align + uniform, rel=1e-5)


def test_the_method_trains_and_its_loss_falls(registered):
    torch.manual_seed(0)
    record = {"recipe": "align_uniform", "dataset": "digits", "data_root": None}
    overrides = {"split": "test", "image_size": 8, "batch_size": 64}
    prepared = prepare({**record, "overrides": overrides})
    method, images = prepared.stages[0].method, prepared.dataset.images
    optimizer = method.configure_optimizer()
    losses = []
    for step in range(30):
        index = torch.randperm(len(images), generator=torch.Generator().manual_seed(step))[:64]
        loss = method.training_step({"image": images[index], "index": index})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.05


def test_registered_it_runs_from_the_command_line(registered, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "align_uniform", "--dataset", "digits", "--out", str(out), "--epochs", "1"]
    settings = ["--set", "split=test", "--set", "image_size=8", "--set", "kmeans_restarts=1"]
    assert main([*argv, *settings, "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == "align_uniform" and 0 < summary["acc"] <= 1


def test_a_recipe_file_is_all_a_new_method_needs(tmp_path):
    """Dropped into recipes/ beside the built-in ones (a copy of the package, so the
    checkout stays as it is), the example is a recipe of every command: listed, trained,
    offered to ``cluster --method``, a pretext-free estimator, a script."""
    shutil.copytree(REPO / "recipes", tmp_path / "recipes")
    shutil.copy(EXAMPLE, tmp_path / "recipes" / "align_uniform.py")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def python(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = python("-m", "cluster_ssl", "list")
    assert "align_uniform" in listed.split("cluster --method:")[1]
    assert "  align_uniform  alignment + uniformity" in listed
    estimator = "import cluster_ssl; print(cluster_ssl.AlignUniform().recipe)"
    assert python("-c", estimator).strip() == "align_uniform"
    settings = ["--set", "split=test", "--set", "image_size=8", "--set", "kmeans_restarts=1"]
    out = tmp_path / "run"
    script = [str(tmp_path / "recipes" / "align_uniform.py"), "--dataset", "digits"]
    python(*script, "--out", str(out), "--epochs", "1", *settings, "--no-progress")
    assert json.loads((out / "summary.json").read_text())["recipe"] == "align_uniform"

"""Fault injection: runs killed at random moments, two writers, a full disk, damaged files.

Every fault ends in one of two ways: the run resumes and ends bit-identical to an
uninterrupted one, or the command exits 2 with one line naming what is wrong, and nothing
already written is lost or replaced. (The loaders' fuzzing is in test_loader_fuzz.py.)
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cluster_ssl.cli import main
from cluster_ssl.runtime import files
from cluster_ssl.runtime.lock import lock_directory

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SMALL = ["--no-progress", "--workers", "0", "--set", "kmeans_restarts=1"]
#: one small run of each family: an autoencoder pipeline, a one-stage contrastive method,
#: and SCAN's three stages
FAMILIES = {
    "dec": [
        "train", "dec", "--dataset", "digits", "--epochs", "6",
        "--set", "maxiter=40", "--set", "update_interval=10", "--set", "tol=0",
        "--set", "batch_size=64",
    ],
    "cc": [
        "train", "cc", "--dataset", "digits", "--epochs", "3", "--set", "split=test",
        "--set", "image_size=8", "--set", "batch_size=64", "--set", "eval_every=0",
    ],
    "scan": [
        "train", "scan", "--dataset", "digits", "--epochs", "2", "--set", "image_size=8",
        "--set", "batch_size=64", "--set", "scan.epochs=2", "--set", "selflabel.epochs=1",
        "--set", "scan.batch_size=64", "--set", "selflabel.batch_size=64",
        "--set", "scan.num_neighbours=3", "--set", "selflabel.confidence_threshold=0.5",
        "--set", "eval_every=0",
    ],
}  # fmt: skip


def command(family: str, out: Path, *extra: str) -> list[str]:
    return [*FAMILIES[family], *SMALL, "--out", str(out), *extra]


def start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cluster_ssl", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(argv: list[str]) -> tuple[int, str]:
    process = start(argv)
    _, err = process.communicate(timeout=600)
    return process.returncode, err.decode()


def the_error(err: str) -> str:
    """The run's one error line: the last line, no traceback; progress lines may precede it."""
    lines = err.splitlines()
    assert "Traceback" not in err and [line for line in lines if line.startswith("error:")] == [
        lines[-1]
    ], err
    return lines[-1]


def final_state(out: Path) -> dict[str, torch.Tensor]:
    summary = json.loads((out / "summary.json").read_text())
    checkpoint = out / "stages" / Path(summary["checkpoint"]).name
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["method"]


def assert_identical(a, b, where: str = "method") -> None:
    """Bit-identical tensors (nested in dicts and lists as state dicts keep them)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, tuple[Path, float]]:
    """Each family's uninterrupted run and its duration."""
    made = {}
    for family in FAMILIES:
        out = tmp_path_factory.mktemp("reference") / family
        started = time.monotonic()
        code, err = finish(command(family, out))
        assert code == 0, err[-2000:]
        made[family] = (out, time.monotonic() - started)
    return made


@pytest.mark.parametrize("family", list(FAMILIES))
def test_kill_9_at_a_random_moment_then_resume_ends_bit_identical(family, references, tmp_path):
    reference, duration = references[family]
    moment = random.Random(f"kill {family}").uniform(0.3, 0.8) * duration  # seeded
    out = tmp_path / "run"
    process = start(command(family, out))
    time.sleep(moment)
    process.send_signal(signal.SIGKILL)
    process.wait()
    for leftover in (out / "stages").glob("*.pt"):  # a half-written temporary, as a kill
        (leftover.parent / f".{leftover.name}.debris.tmp").write_bytes(b"half")
    resumed = command(family, out, "--resume") if (out / "run.json").exists() else None
    code, err = finish(resumed or command(family, out))
    assert code == 0, err[-2000:]
    assert_identical(final_state(out), final_state(reference))
    assert not list(out.glob("**/.*.tmp"))  # the debris is gone
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [(e["stage"], e["epoch"]) for e in events if "epoch" in e]
    assert len(epochs) == len(set(epochs))  # replayed epochs are logged once
    assert sum(e["stage"] == "final" for e in events) == 1


def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_lock(tmp_path):
    out = tmp_path / "run"
    first = start(command("dec", out, "--seed", "1", "--epochs", "150"))  # runs a while
    deadline = time.monotonic() + 120
    while not (out / "run.json").exists():
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    code, err = finish(command("dec", out, "--seed", "2", "--epochs", "150"))
    assert first.poll() is None  # still running: the second command met it
    assert code == 2 and err.count("\n") == 1, err
    assert f"is in use by another cluster-ssl process (pid {first.pid} on " in err
    code, err = finish(command("dec", out, "--resume"))  # a resume waits its turn too
    assert first.poll() is None and code == 2 and "in use" in err
    first.send_signal(signal.SIGKILL)
    first.wait()
    with lock_directory(out):  # the kernel released the killed process's lock
        pass
    assert json.loads((out / "run.json").read_text())["seed"] == 1  # the first run's


def test_a_full_disk_is_one_line_keeps_the_checkpoint_and_resume_ends_identical(
    references, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    writes = []
    real_fsync = os.fsync

    def filling(fd):  # the disk fills up after a few files were written
        writes.append(fd)
        if len(writes) > 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", filling)
    assert main(command("dec", out)) == 2
    err = capsys.readouterr().err
    assert the_error(err).startswith("error: no space left on device while writing ")
    kept = sorted((out / "stages").glob("*.pt"))
    assert kept  # the checkpoint written before the disk filled is intact and verifies
    monkeypatch.undo()
    assert main(command("dec", out, "--resume")) == 0
    assert_identical(final_state(out), final_state(references["dec"][0]))


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MB file system (tmpfs), where this process may mount one (root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root); the monkeypatched test covers it")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_real_full_disk_keeps_the_last_checkpoint(references, small_disk, tmp_path):
    out = small_disk / "run"
    code, err = finish(command("dec", out))  # each checkpoint is ~5 MB with Adam's state
    assert code == 2, err[-2000:]
    assert the_error(err).startswith("error: no space left on device while writing ")
    moved = copy_run(out, tmp_path / "run")  # space freed: the run moves to a larger disk
    code, err = finish(command("dec", moved, "--resume"))
    assert code == 0, err[-2000:]
    assert_identical(final_state(moved), final_state(references["dec"][0]))


def test_a_read_only_file_system_is_one_line(small_disk, capsys):
    (small_disk / "run").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        assert main(command("dec", small_disk / "run")) == 2
        err = capsys.readouterr().err
        assert "cannot write there (Read-only file system)" in err and err.count("\n") == 1
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)


def test_metrics_that_cannot_be_appended_are_one_line(tmp_path, monkeypatch, capsys):
    def full(text, path):
        raise files.UserError(files.write_error(OSError(errno.ENOSPC, "full"), Path(path)))

    monkeypatch.setattr("cluster_ssl.engine.logging.append_line", full)
    assert main(command("dec", tmp_path / "run")) == 2
    assert "no space left on device while writing" in capsys.readouterr().err


@pytest.fixture(scope="module")
def finished(references) -> Path:
    return references["dec"][0]


def copy_run(source: Path, target: Path) -> Path:
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    return target


@pytest.mark.parametrize(
    "content", [b'{"recipe": "dec", "data', b"\xff\xfe garbage", b"{}", b"[1,2]"]
)
def test_a_damaged_run_json_is_one_line_on_resume(finished, tmp_path, capsys, content):
    out = copy_run(finished, tmp_path / "run")
    (out / "run.json").write_bytes(content)
    summary = (out / "summary.json").read_bytes()
    assert main(command("dec", out, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.json is damaged" in err and "delete it" in err
    assert (out / "summary.json").read_bytes() == summary


def test_a_lost_run_json_is_rebuilt_from_the_checkpoints(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path / "run")
    record = json.loads((out / "run.json").read_text())
    (out / "run.json").unlink()
    assert main(command("dec", out)) == 2  # a fresh command does not take it over
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert main(command("dec", out, "--resume")) == 0
    assert "run.json was missing; rebuilt from" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text()) == record


@pytest.mark.parametrize("content", [b'{"acc": 0.8', b"{}"])
@pytest.mark.parametrize("verb", ["eval", "predict"])
def test_a_damaged_summary_is_one_line(finished, tmp_path, capsys, content, verb):
    out = copy_run(finished, tmp_path / "run")
    (out / "summary.json").write_bytes(content)
    argv = [verb, str(out)]
    if verb == "predict":
        images = tmp_path / "images"
        images.mkdir()
        from PIL import Image

        Image.new("L", (8, 8)).save(images / "a.png")
        argv += [str(images), "--out", str(tmp_path / "p.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "summary.json is damaged" in err


def test_a_flipped_bit_is_named_and_replaces_nothing(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path / "run")
    checkpoint = sorted((out / "stages").glob("*.pt"))[-1]
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 1
    checkpoint.write_bytes(bytes(data))
    summary = (out / "summary.json").read_bytes()
    assert main(["eval", str(out)]) == 2
    assert f"checkpoint {checkpoint} is damaged" in capsys.readouterr().err
    assert main(command("dec", out, "--resume")) == 2
    assert (out / "summary.json").read_bytes() == summary  # the good summary stays


def test_a_foreign_torch_file_among_the_stages_is_one_line(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path / "run")
    first = sorted((out / "stages").glob("*.pt"))[0]
    first.with_name(first.name + ".sha256").unlink()
    torch.save({"hello": 1}, first)
    assert main(command("dec", out, "--resume")) == 2
    err = capsys.readouterr().err
    assert "is not a cluster-ssl stage checkpoint" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seed", "99999999999999999999999"], "--seed 99999999999999999999999: give a whole"),
        (["--set", "batch_size=1000000000"], "more than the 1797 training images"),
        (["--set", "hidden_dims=1000000000"], "need more memory than this machine has"),
        (["--set", "pretrain.lr=nan"], "--set pretrain.lr='nan': expected a finite number"),
    ],
)
def test_bad_sizes_and_seeds_are_one_line_before_anything_is_written(
    tmp_path, capsys, extra, message
):
    out = tmp_path / "run"
    assert main(command("dec", out, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()  # nothing written, not even the lock


def test_an_image_size_beyond_memory_is_one_line(tmp_path, capsys):
    argv = ["train", "cc", "--dataset", "digits", "--set", "image_size=100000", *SMALL]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory") and err.count("\n") == 1


def test_an_out_below_a_file_or_on_a_read_only_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(command("dec", tmp_path / "file" / "run")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write there" in err


def test_estimator_options_get_the_clis_checks():
    from sklearn.datasets import load_digits

    from cluster_ssl import DEC

    x = load_digits().data[:200]
    for options, message in (
        ({"pretrain.lr": float("nan")}, "--set pretrain.lr=nan: expected a finite number"),
        ({"tol": float("inf")}, "--set tol=inf: expected a finite number"),
        ({"epochs": 2.5}, "--set epochs=2.5: expected a whole number"),
    ):
        with pytest.raises(ValueError, match=re.escape(message) + ".*pass settings as options="):
            DEC(n_clusters=10, options=options).fit(x)

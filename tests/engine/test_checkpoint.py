"""Atomic writes, strict loading and RNG capture."""

import errno
import os
import random
import stat

import numpy as np
import pytest
import torch
from torch import nn

from cluster_ssl.engine import checkpoint as ckpt
from cluster_ssl.runtime import files
from cluster_ssl.runtime import state as module_state
from cluster_ssl.runtime.errors import UserError


@pytest.mark.parametrize("failing_write", [1, 2])  # the checksum's, the checkpoint's
def test_a_full_disk_keeps_the_old_checkpoint_and_says_so(tmp_path, monkeypatch, failing_write):
    path = tmp_path / "c.pt"
    ckpt.save_checkpoint({"epoch": 1}, path)
    writes = []
    real_fsync = os.fsync

    def full_disk(fd):
        writes.append(fd)
        if len(writes) == failing_write:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(UserError, match="^no space left on device while writing .*c.pt"):
        ckpt.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["epoch"] == 1  # intact, and it still verifies
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "c.pt.sha256"]  # no temp


def test_a_changed_byte_or_a_foreign_file_is_named(tmp_path):
    path = tmp_path / "01-x.pt"
    state = {key: 0 for key in ckpt.STAGE_KEYS}
    ckpt.save_checkpoint({**state, "weights": torch.arange(1000.0)}, path)
    assert ckpt.load_stage_checkpoint(path)["weights"].sum() == 499500
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40  # one bit inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"01-x.pt is damaged: its bytes do not match"):
        ckpt.load_stage_checkpoint(path)
    foreign = tmp_path / "hello.pt"
    torch.save({"hello": 1}, foreign)  # no checksum: loaded, then found not to be ours
    with pytest.raises(UserError, match="not a cluster-ssl stage checkpoint .*stop_reason"):
        ckpt.load_stage_checkpoint(foreign)
    (tmp_path / "01-x.pt.sha256").write_text("{")
    with pytest.raises(UserError, match=r"01-x.pt.sha256 is damaged"):
        ckpt.load_checkpoint(path)


def test_a_write_killed_between_checksum_and_rename_still_verifies(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    ckpt.save_checkpoint({"epoch": 1}, path)

    def killed(data, target):
        raise KeyboardInterrupt  # after the checksum of the new content was written

    monkeypatch.setattr(ckpt, "write_bytes", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["epoch"] == 1
    ckpt.save_checkpoint({"epoch": 3}, path)
    assert ckpt.load_checkpoint(path)["epoch"] == 3


def test_written_files_get_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o027)
    try:
        files.write_bytes(b"x", tmp_path / "shared.csv")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.csv").stat().st_mode) == 0o640  # not mkstemp's 0600


def test_a_target_that_cannot_be_written_is_a_user_error(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(UserError, match="dir is a directory; name a file to write"):
        files.write_bytes(b"x", tmp_path / "dir")
    (tmp_path / "file").write_text("a file where a folder should be")
    with pytest.raises(
        UserError,
        match=r"^cannot write .*file/out.json: a file is where one of its folders should be$",
    ):
        files.write_json({}, tmp_path / "file" / "out.json")
    assert (tmp_path / "file").read_text() == "a file where a folder should be"


def test_write_json_handles_numpy(tmp_path):
    files.write_json({"a": np.int64(3), "b": np.arange(2)}, tmp_path / "s.json")
    assert (tmp_path / "s.json").read_text().count("\n") > 1


def test_missing_and_damaged_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        ckpt.load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        ckpt.load_checkpoint(bad)


def test_strict_loading_names_missing_unexpected_and_mismatched_keys():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    with pytest.raises(UserError, match=r"missing keys 0\.bias.*unexpected keys module\.0\.bias"):
        module_state.load_state_strict(model, state, "the backbone")
    wrong = dict(model.state_dict())
    wrong["1.weight"] = torch.zeros(5, 4)
    with pytest.raises(UserError, match=r"shape mismatch at 1\.weight"):
        module_state.load_state_strict(model, wrong, "the backbone")
    other = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    module_state.load_state_strict(other, model.state_dict(), "the backbone")
    assert torch.equal(other[0].weight, model[0].weight)


def test_rng_state_round_trip():
    module_state.seed_everything(3)
    state = module_state.rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    module_state.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first

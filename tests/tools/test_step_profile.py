"""The step timer (nested sections, own time, inactive by default) and the per-method step
profile behind ``tools/benchmark.py METHOD``: every section of a real stage is measured, the
bare backbone is timed on the shapes the step fed it, and a whole epoch gives the refresh share."""

import pytest
import torch

from cluster_ssl.models.backbones import build_backbone
from cluster_ssl.runtime import timing as step_timer
from cluster_ssl.runtime.timing import StepTimer, timed
from tools.step_profile import STEP_SECTIONS, profile_stage, report

CPU = torch.device("cpu")
TINY = {"split": "test", "eval_split": "", "image_size": 8, "kmeans_restarts": "1"}


@pytest.fixture
def clock(monkeypatch):
    """A fake clock: ``clock(seconds)`` advances the time the timer reads, nothing sleeps."""
    now = [100.0]
    monkeypatch.setattr(step_timer.time, "perf_counter", lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds

    return advance


def test_sections_nest_and_report_their_own_time(clock):
    with StepTimer(CPU) as timer:
        with timed("outer"):
            clock(0.02)
            with timed("inner"):
                clock(0.05)
        with timed("inner"):
            clock(0.01)
    assert timer.calls == {"outer": 1, "inner": 2}
    assert timer.own_seconds["inner"] == pytest.approx(0.06)
    assert timer.own_seconds["outer"] == pytest.approx(0.02)  # the inner 0.05 s counted once


def test_a_part_breaks_down_its_section_without_taking_its_time(clock):
    with StepTimer(CPU) as timer, timed("refresh"):
        clock(0.02)
        with timed("pass", part=True):
            clock(0.04)
            with timed("augment"):
                clock(0.03)
    assert timer.calls == {"refresh": 1, "augment": 1}  # a part is not a section of its own
    assert "pass" not in timer.own_seconds
    assert timer.own_seconds["augment"] == pytest.approx(0.03)
    passed = timer.parts["refresh/pass"]
    assert passed == pytest.approx(0.04)  # the pass's own time, without the augment inside it
    # the refresh's own time is its 0.02 s plus the pass's own 0.04 s, the augment not included
    assert timer.own_seconds["refresh"] - passed == pytest.approx(0.02)


def test_timed_does_nothing_without_an_active_timer():
    with timed("data"):
        pass
    assert step_timer._active is None
    with StepTimer(CPU), pytest.raises(RuntimeError, match="already active"):
        StepTimer(CPU).__enter__()
    assert step_timer._active is None


@pytest.mark.parametrize(("recipe", "bare_calls"), [("simclr", 1), ("scan", 1)])
def test_profile_measures_every_section_and_the_bare_backbone(recipe, bare_calls):
    overrides = {**TINY, "eval_split": "test"} if recipe == "scan" else TINY
    profile = profile_stage(recipe, "digits", overrides=overrides, batch_size=32, steps=3, warmup=1)
    assert profile.steps == 3
    assert profile.stage == ("scan" if recipe == "scan" else "simclr")
    for section in ("data", "augment", "forward_backward", "optimizer"):
        assert profile.seconds[section] > 0, section
    assert profile.step_seconds == pytest.approx(
        sum(profile.seconds.get(s, 0.0) for s in STEP_SECTIONS) / 3
    )
    # SimCLR's two views and SCAN's anchors with their neighbours go through the backbone as
    # one batch of 2 x 32 images
    assert profile.bare_shapes == [(64, 1, 8, 8)] * bare_calls
    assert profile.overhead_ratio == pytest.approx(profile.step_seconds / profile.bare_seconds)
    # the network timed bare is the preset's quarter-width ResNet-18 on 1-channel digits
    quarter = build_backbone("resnet18", in_channels=1, stem="cifar", width=0.25)
    assert profile.backbone_parameters == sum(p.numel() for p in quarter.parameters())
    assert profile.refresh_share is None  # less than an epoch was measured
    text = report(profile, "cpu")
    assert "overhead ratio (full step / bare backbone)" in text and "images/s" in text
    assert f"{profile.backbone_parameters / 1e6:.2f}M parameters" in text


@pytest.mark.parametrize(("pass_batch_size", "expected"), [(None, 64), (100, 100)])
def test_whole_epochs_give_the_share_of_deepclusters_per_epoch_refresh(
    pass_batches, pass_batch_size, expected
):
    profile = profile_stage(
        "deepcluster",
        "digits",
        overrides=TINY,
        batch_size=64,
        epochs=1,
        warmup=0,
        pass_batch_size=pass_batch_size,
    )
    assert set(pass_batches) == {expected}  # the ResNet's passes on a CPU, or --pass-batch
    assert profile.steps == profile.steps_per_epoch == 359 // 64
    assert profile.calls["epoch_refresh"] == 1  # PCA + k-means + new head, once an epoch
    assert 0 < profile.refresh_share < 1
    # the refresh's features come from one pass over the dataset, a part of the refresh
    refresh_pass = profile.parts["epoch_refresh/dataset_pass"]
    assert 0 < refresh_pass < profile.seconds["epoch_refresh"]
    assert profile.refresh_pass_share == pytest.approx(refresh_pass / profile.epoch_seconds)
    assert profile.refresh_pass_share < profile.refresh_share
    text = report(profile, "cpu")
    assert "refresh share of an epoch" in text
    assert "dataset_pass inside epoch_refresh" in text


def test_an_unknown_stage_names_the_stages_there_are():
    with pytest.raises(SystemExit, match="its stages are: pretext, scan, selflabel"):
        profile_stage("scan", "digits", overrides=TINY, stage_name="nope", steps=1)

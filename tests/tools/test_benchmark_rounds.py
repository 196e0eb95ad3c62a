"""`tools/benchmark.py METHOD --reference lightly` and `--contention`: rounds of our step
against lightly's way of training the same network, and alone against beside a competing
job, each ending in one parsable line; lightly's transform at our augmentation's strengths
and its loss equal to ours; the one-line refusals."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys

import pytest
import torch

from cluster_ssl.augment import TwoViews, build_pipeline
from cluster_ssl.losses.cc import cluster_contrastive_loss, instance_contrastive_loss
from cluster_ssl.losses.contrastive import nt_xent
from cluster_ssl.runtime.errors import UserError
from tools import benchmark, contention
from tools.benchmark import main
from tools.lightly_peer import INSTALL_HINT, lightly_loss, transform_settings

TINY = ["--batch", "8", "--steps", "1", "--warmup", "1", "--rounds", "1"]


@pytest.mark.parametrize("recipe", ["simclr", "cc", "scan"])
def test_lightly_rounds_end_in_the_ratio_line(recipe, capsys):
    pytest.importorskip("lightly")
    main(
        [recipe, "--reference", "lightly", *TINY, "--peer-workers", "0"] + ["--set", "width=0.0625"]
    )
    lines = capsys.readouterr().out.splitlines()
    stage = "pretext" if recipe == "scan" else recipe
    assert any(line.startswith(f"stage {stage!r} of {recipe}, batch 8") for line in lines)
    assert re.fullmatch(r"round 1/1: ours [\d,.]+ images/s, lightly [\d,.]+ images/s", lines[-3])
    match = re.fullmatch(
        r"ratio ours/lightly: (\d+\.\d\d) \(images/s, median of 1 rounds\)", lines[-1]
    )
    assert match and float(match.group(1)) > 0


def test_without_lightly_the_reference_is_one_line_naming_the_extra(monkeypatch):
    for module in ("lightly", "lightly.loss", "lightly.transforms"):
        monkeypatch.setitem(sys.modules, module, None)  # import lightly fails
    message = f"error: --reference lightly needs the lightly package: {INSTALL_HINT}"
    with pytest.raises(SystemExit) as exit_:
        main(["simclr", "--reference", "lightly", *TINY])
    assert exit_.value.code == message
    assert INSTALL_HINT == "pip install -e '.[bench]'"


def test_lightly_has_no_loss_of_the_other_methods(monkeypatch):
    pytest.importorskip("lightly")
    with pytest.raises(SystemExit, match="^error: --reference lightly: lightly has no loss of DEC"):
        main(["dec", "--reference", "lightly", *TINY])


def test_lightly_transform_takes_the_strengths_of_our_pipeline():
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    cc_view = build_pipeline(
        "cc", image_size=24, mean=mean, std=std, strength=0.5, blur=True, flip=False, crop_scale=0.3
    )
    settings = transform_settings(TwoViews(cc_view))
    assert settings == {
        "input_size": 24,
        "min_scale": 0.3,
        "hf_prob": 0.0,
        "cj_prob": 0.8,
        "cj_strength": 1.0,
        "cj_bright": 0.4,
        "cj_contrast": 0.4,
        "cj_sat": 0.4,
        "cj_hue": 0.1,
        "random_gray_scale": 0.2,
        "gaussian_blur": 0.5,
        "sigmas": (0.1, 2.0),
        "normalize": {"mean": pytest.approx(mean), "std": pytest.approx(std)},
    }
    simclr_view = build_pipeline("simclr", image_size=32, mean=mean, std=std)
    simclr = transform_settings(TwoViews(simclr_view))
    assert (simclr["min_scale"], simclr["hf_prob"], simclr["gaussian_blur"]) == (0.2, 0.5, 0.0)
    assert (simclr["cj_bright"], simclr["cj_hue"]) == (pytest.approx(0.4), pytest.approx(0.1))
    lightly = pytest.importorskip("lightly.transforms")
    two = lightly.SimCLRTransform(**simclr)(__import__("PIL.Image").Image.new("RGB", (32, 32)))
    assert [view.shape for view in two] == [torch.Size([3, 32, 32])] * 2


def _method(recipe: str):
    from tools.recipe_step import RecipeStep

    overrides = {"width": "0.0625", "image_size": "16"}
    step = RecipeStep(recipe, "synthetic", overrides=overrides, batch_size=8, device_spec="cpu")
    step.close()
    return step.stage.method.eval()  # batch statistics aside: the same outputs twice


def test_lightly_loss_is_simclr_loss_on_the_same_views():
    lightly = pytest.importorskip("lightly.loss")
    method = _method("simclr")
    x0, x1 = torch.randn(2, 8, 3, 16, 16)
    ours = nt_xent(*(method.head(method.backbone(x)) for x in (x0, x1)), method.temperature)
    assert lightly_loss(method, lightly.NTXentLoss)(x0, x1).item() == pytest.approx(ours.item())


def test_lightly_loss_is_cc_loss_on_the_same_views():
    lightly = pytest.importorskip("lightly.loss")
    method = _method("cc")
    x0, x1 = torch.randn(2, 8, 3, 16, 16)
    h0, h1 = method.backbone(x0), method.backbone(x1)
    instance = instance_contrastive_loss(
        method.instance_head(h0), method.instance_head(h1), method.instance_temperature
    )
    cluster, _ = cluster_contrastive_loss(
        method.cluster_head(h0), method.cluster_head(h1), method.cluster_temperature
    )
    peer = lightly_loss(method, lightly.NTXentLoss)(x0, x1)
    assert peer.item() == pytest.approx((instance + cluster).item(), rel=1e-5)


def test_contention_rounds_end_in_the_slowdown_line(monkeypatch, capsys):
    loads = []

    @contextlib.contextmanager
    def no_load(threads: int):  # the load itself: test_the_competing_job_runs_during_the_block
        loads.append(threads)
        yield

    monkeypatch.setattr(contention, "competing_load", no_load)
    main(["dec", "--contention", *TINY, "--rounds", "2", "--load-threads", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert loads == [3, 3]
    assert re.fullmatch(r"round 2/2: alone [\d,.]+ ms a step, beside the job [\d,.]+ ms", lines[-3])
    match = re.fullmatch(
        r"slowdown beside a 3-thread job: (\d+\.\d\d)x \(step time, median of 2 rounds\)", lines[-1]
    )
    assert match and float(match.group(1)) > 0


def test_the_competing_job_runs_during_the_block_only(monkeypatch):
    monkeypatch.setattr(contention, "COMPETITOR", 'print("ready", flush=True)\nwhile True: pass')
    with contention.competing_load(threads=2) as process:
        assert process.poll() is None
    assert process.returncode is not None


def test_the_competing_job_has_torch_defaults_not_our_wait_policy(monkeypatch):
    from cluster_ssl.runtime.threads import WaitPolicy

    ours = WaitPolicy({"OMP_WAIT_POLICY": "PASSIVE"}, {}, ())
    monkeypatch.setattr(contention, "process_wait_policy", lambda: ours)
    environ = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2"}
    assert contention.competitor_environment(environ) == {"OMP_NUM_THREADS": "2"}
    users = WaitPolicy({}, {"OMP_WAIT_POLICY": "ACTIVE"}, ())
    monkeypatch.setattr(contention, "process_wait_policy", lambda: users)
    assert contention.competitor_environment({"OMP_WAIT_POLICY": "ACTIVE"}) == {
        "OMP_WAIT_POLICY": "ACTIVE"
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--reference", "lightly", "--contention"], "--reference and --contention are separate"),
        (["--contention", "--epochs", "1"], "--epochs: not with --reference or --contention"),
        (["--contention", "--rounds", "0"], "--rounds must be at least 1, got 0"),
    ],
)
def test_round_options_are_refused_in_one_line(options, message):
    with pytest.raises(SystemExit, match=f"^error: {re.escape(message)}"):
        main(["dec", *options])


def test_the_cpu_preset_on_other_images_keeps_the_network_and_optimiser():
    settings = benchmark.cpu_preset_settings("simclr", 32)
    assert settings["width"] == 0.25 and settings["batch_size"] == 256
    assert settings["optimizer"] == "adam" and settings["image_size"] == 32
    assert "epochs" not in settings


def test_the_competing_job_ends_without_its_parent():
    code = contention.COMPETITOR.format(threads=1, side=8, parent=-1)  # never its parent
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "ready\n")


def test_a_stage_that_stops_before_its_first_step_is_one_line(monkeypatch):
    from tools.recipe_step import RecipeStep

    with RecipeStep("dec", "digits", overrides={}, batch_size=64, device_spec="cpu") as step:
        monkeypatch.setattr(step.stage.method, "stop_reason", lambda: "labels settled")
        with pytest.raises(UserError, match="stopped before its first step.*--set tol=0"):
            step.run(2)


def test_speed_auto_times_our_step_with_the_trials_choice(monkeypatch, capsys):
    from cluster_ssl.engine.speed import SpeedChoice
    from tools import recipe_step

    runs = []

    class Trial:  # the trial itself is tests/engine's: here only what is done with its choice
        min_run_steps = 500

        def choose(self, run):
            runs.append(run)
            return SpeedChoice(mode="auto", channels_last=True, workers=1, trial_seconds=0.5)

    monkeypatch.setattr(recipe_step, "SpeedTrial", Trial)
    monkeypatch.setattr(contention, "competing_load", lambda threads: contextlib.nullcontext())
    main(["dec", "--contention", *TINY, "--speed", "auto"])
    (run,) = runs
    assert run.total_steps >= 500 and run.channels_last is None and run.micro_batch == 8
    header = capsys.readouterr().out
    assert "ours: speed auto (measured in 0.5 s): channels_last on" in header
    with recipe_step.RecipeStep(
        "dec", "digits", overrides={}, batch_size=8, device_spec="cpu", speed="auto"
    ) as step:
        assert step.trainer.settings.channels_last is True and step.ctx.num_workers == 1
    with recipe_step.RecipeStep("dec", "digits", overrides={}, device_spec="cpu") as step:
        assert step.trainer.settings.channels_last is False
        assert step.speed_line == "speed off: channels_last off"


def test_speed_auto_outside_the_rounds_is_one_line():
    with pytest.raises(SystemExit, match=r"^error: --speed auto: only with --reference or"):
        main(["dec", "--speed", "auto", *TINY[:4]])

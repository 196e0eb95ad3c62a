"""``--speed auto`` end to end on digits, with the trial on a fake clock: a run whose trial
keeps today's defaults ends with exactly the weights of ``--speed off`` (the trial changes
nothing of the run), the settings the trial keeps are the ones the run trains with, they are
recorded in run.json and the checkpoints, and ``--resume`` takes them from there without
measuring again and ends bit-identical to an uninterrupted run."""

import json

import pytest
import torch

import cluster_ssl.engine.trainer as trainer_module
import cluster_ssl.methods.base as methods_base
from cluster_ssl.cli import build_parser, main
from cluster_ssl.commands.folder.cluster import cluster_folder
from cluster_ssl.commands.folder.request import FolderRequest
from cluster_ssl.commands.record import RunRequest
from cluster_ssl.commands.train import train
from cluster_ssl.engine.speed_trial import PASS_BATCHES
from tests.commands.test_cluster_folder import write_few_images
from tests.commands.test_folder_plan import ticking
from tests.engine.speed_clock import fake_trial

#: CC on digits in 10 steps: convolutions (so channels_last is a candidate), one stage
SMALL = {
    "epochs": 2,
    "split": "test",
    "image_size": 8,
    "batch_size": 64,
    "eval_every": 0,
    "kmeans_restarts": 1,
}
TIE = {f"pass {size}": float(size) for size in PASS_BATCHES["cpu"]}  # equal time per image
FASTER = {**TIE, "step nhwc": 0.5, "pass 128": 64.0}  # NHWC steps, and passes of 128


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(out, speed=None, costs=None, resume=False, **options):
    trial, clock = fake_trial(costs or TIE, fraction=1e6)
    request = RunRequest(
        recipe="cc",
        dataset="digits",
        out=out,
        overrides=dict(SMALL),
        speed=speed,
        speed_trial=trial,
        resume=resume,
        progress=False,
        num_workers=0,
        **options,
    )
    return train(request), clock


def final_state(out):
    return torch.load(out / "stages" / "01-cc.pt", weights_only=False)["method"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key


def test_speed_is_an_option_of_train_and_cluster_and_auto_is_the_default():
    parser = build_parser()
    assert parser.parse_args(["train", "--speed", "off"]).speed == "off"
    args = parser.parse_args(["cluster", "photos", "--k", "3", "--out", "o"])
    assert args.speed is None  # not given: auto for a new run, the recorded one on --resume
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--speed", "fast"])


def test_a_trial_that_keeps_the_defaults_ends_with_the_weights_of_speed_off(tmp_path, capsys):
    _, clock = run(tmp_path / "auto")
    assert clock.readings > 0  # it did measure
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("speed auto (measured in")
    run(tmp_path / "off", speed="off")
    assert_same_weights(final_state(tmp_path / "auto"), final_state(tmp_path / "off"))
    recorded = json.loads((tmp_path / "auto" / "run.json").read_text())
    assert recorded["speed"] == "auto"
    assert recorded["speed_choice"]["mode"] == "auto"
    assert not recorded["speed_choice"]["channels_last"]
    off = json.loads((tmp_path / "off" / "run.json").read_text())
    assert off["speed"] == "off" and off["speed_choice"]["mode"] == "off"


def test_the_settings_kept_are_the_ones_the_run_trains_with(tmp_path, monkeypatch, capsys):
    batches = []
    real_embed = methods_base.embed

    def spy(*args, batch_size, **kwargs):
        batches.append(batch_size)
        return real_embed(*args, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(methods_base, "embed", spy)
    run(tmp_path / "fast", costs=FASTER)
    choice = json.loads((tmp_path / "fast" / "run.json").read_text())["speed_choice"]
    assert choice["channels_last"] and choice["pass_batch_size"] == 128
    assert batches and set(batches) == {128}  # every whole-dataset pass, the final one too
    batches.clear()
    assert main(["eval", str(tmp_path / "fast"), "--device", "cpu", "--workers", "0"]) == 0
    assert batches and set(batches) == {128}  # eval (and cluster's outputs) use it too
    checkpoint = torch.load(tmp_path / "fast" / "stages" / "01-cc.pt", weights_only=False)
    assert checkpoint["run"]["speed_choice"] == choice  # a lost run.json is rebuilt with it
    convolutions = [value for value in checkpoint["method"].values() if value.ndim == 4]
    assert convolutions
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)


def test_resume_takes_the_recorded_choice_without_measuring_and_ends_bit_identical(
    tmp_path, monkeypatch, capsys
):
    run(tmp_path / "reference", costs=FASTER)
    real_save = trainer_module.save_checkpoint

    def save_then_stop(*args, **kwargs):  # killed just after its first checkpoint
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    out = tmp_path / "interrupted"
    monkeypatch.setattr(trainer_module, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(out, costs=FASTER)
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
    capsys.readouterr()
    _, clock = run(out, costs=TIE, resume=True)  # a new measurement would keep the defaults
    assert clock.readings == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "channels_last on" in line and "(as recorded for this run)" in line
    assert_same_weights(final_state(out), final_state(tmp_path / "reference"))


def test_resume_cannot_change_the_speed_mode(tmp_path, capsys):
    run(tmp_path / "auto")
    code = main(
        ["train", "cc", "--dataset", "digits", "--out", str(tmp_path / "auto"), "--resume"]
        + ["--speed", "off", "--no-progress", "--workers", "0"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --resume continues") and "speed" in err[-1]


def test_a_run_recorded_before_speed_existed_resumes_with_the_fixed_defaults(
    tmp_path, monkeypatch, capsys
):
    out = tmp_path / "older"
    run(out, speed="off")
    record = json.loads((out / "run.json").read_text())
    del record["speed"], record["speed_choice"]
    (out / "run.json").write_text(json.dumps(record))
    (out / "summary.json").unlink()
    _, clock = run(out, resume=True)
    assert clock.readings == 0
    assert "speed off" in capsys.readouterr().out


def test_cluster_measures_once_and_its_time_budget_restart_keeps_the_choice(tmp_path, capsys):
    folder = write_few_images(tmp_path / "images", count=8)
    out = tmp_path / "out"
    trial, _ = fake_trial({**FASTER, "loader 1x0": 0.2}, fraction=1e6)
    request = FolderRequest(
        folder,
        2,
        out,
        progress=False,
        num_workers=2,
        time_budget=8.0,
        clock=ticking(0.5),
        speed_trial=trial,
    )
    cluster_folder(request)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("speed")]
    assert len(lines) == 2
    assert "as recorded" not in lines[0]  # measured by the budget's measuring run
    assert lines[1].endswith("(as recorded for this run)")  # the run at the chosen length
    choice = json.loads((out / "run.json").read_text())["speed_choice"]
    assert choice["channels_last"] and (choice["threads"], choice["workers"]) == (1, 0)

"""``cluster``'s start block, its estimate from the first steps and ``--time-budget``
(a fake clock: no test asserts a measured time)."""

import itertools
import json

import pytest

from cluster_ssl.cli import main, parse_duration
from cluster_ssl.commands.folder.cluster import cluster_folder
from cluster_ssl.commands.folder.request import FolderRequest
from cluster_ssl.engine.trainer import Pace
from cluster_ssl.runtime.errors import UserError
from tests.commands.test_cluster_folder import write_few_images


def ticking(seconds: float = 0.5):
    """A clock that advances ``seconds`` at every reading."""
    counter = itertools.count()
    return lambda: next(counter) * seconds


def test_pace_times_after_the_warm_up_and_estimates_steps_times_step_time():
    pace = Pace(clock=ticking(2.0), warmup_steps=1, measured_steps=3)
    pace.start_stage(0, 100, 10)
    pace.plan[1], pace.epochs[1] = 50, 5
    pace.step_starts()
    assert [pace.step_done() for _ in range(4)] == [False, False, False, True]
    assert pace.step_seconds == {0: 2.0}
    assert pace.estimate() == 150 * 2.0
    pace.refresh_seconds[0] = 1.0
    assert pace.estimate() == 150 * 2.0 + 10 * 1.0


def test_after_a_minute_the_estimate_follows_the_pace_the_run_keeps():
    now = [0.0]
    pace = Pace(clock=lambda: now[0], warmup_steps=1, measured_steps=5)
    pace.start_stage(0, 100, 1)
    pace.plan[1], pace.epochs[1] = 50, 1  # a later stage, not measured yet
    refined = []
    pace.step_starts()
    for step in range(1, 101):
        now[0] += 1.0 if step <= 6 else 3.0  # the machine gets busy after the measured steps
        pace.step_done()
        refined.append(pace.refine(0, 100 - step))
    assert pace.estimate() == 150 * 1.0  # what the first steps foresaw
    first = next(i for i, total in enumerate(refined) if total is not None)
    assert first == 23 and now[0] >= 60  # step 24, one minute in: 6 x 1 s + 18 x 3 s
    # 60 s so far, 76 steps left at the 2.5 s a step kept, the later stage 2.5x its estimate
    assert refined[first] == pytest.approx(60 + 76 * 2.5 + 50 * 1.0 * 2.5)
    assert pace.first_refined == refined[first]
    again = [i for i, total in enumerate(refined) if total is not None]
    assert again[1] == first + 20  # the next a minute later (20 steps of 3 s)


def test_a_short_first_epoch_measures_on_what_ran():
    pace = Pace(clock=ticking(1.0), measured_steps=5)
    pace.start_stage(0, 6, 3)
    pace.step_starts()
    pace.step_done()
    pace.step_done()
    assert pace.epoch_done() and pace.step_seconds == {0: 1.0}


def test_the_block_lists_everything_and_the_estimate_is_steps_times_step_time(tmp_path, capsys):
    folder = write_few_images(tmp_path / "images", count=8)
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    request = FolderRequest(
        folder, 2, out, epochs=2, progress=False, num_workers=0, clock=ticking(0.5)
    )
    summary = cluster_folder(request)
    printed = capsys.readouterr()
    for item in (
        "images found: 8",
        "files skipped: 1 (listed in",
        "skipped.txt",
        "method: cc",
        "network: resnet18, width 0.25",
        "image size: 16",
        "stages: cc 2 epochs",
        "device: cpu, threads",
        "estimated time:",
    ):
        assert item in printed.out, item
    assert "estimated training time: ~" in printed.err  # once measured
    steps = sum(stage["steps"] for stage in summary["stages"])
    epochs = sum(stage["epochs"] for stage in summary["stages"])
    assert summary["estimated_seconds"] == pytest.approx(steps * 0.5 + epochs * 0.5)
    written = json.loads((out / "summary.json").read_text())
    assert written["estimated_seconds"] == summary["estimated_seconds"]
    assert "seconds" in written


def test_the_summary_and_the_end_line_give_the_estimate_after_a_minute(tmp_path, capsys):
    folder = write_few_images(tmp_path / "images", count=8)
    request = FolderRequest(
        folder, 2, tmp_path / "out", epochs=3, progress=False, num_workers=0, clock=ticking(7.0)
    )
    summary = cluster_folder(request)
    assert "estimated training time after the first minute: ~" in capsys.readouterr().err
    assert summary["estimated_seconds_after_first_minute"] > 0


def test_the_budget_picks_epochs_that_fit_and_resume_keeps_them(tmp_path, capsys):
    folder = write_few_images(tmp_path / "images", count=8)
    out = tmp_path / "out"
    # 8 images, batches of 2: 4 steps an epoch of 0.5 s, and a 0.5 s refresh: 2.5 s an epoch
    request = FolderRequest(
        folder, 2, out, progress=False, num_workers=0, time_budget=8.0, clock=ticking(0.5)
    )
    summary = cluster_folder(request)
    assert "--time-budget 8 s: epochs cc 3" in capsys.readouterr().out
    assert summary["stages"][0]["epochs"] == 3
    assert summary["estimated_seconds"] == pytest.approx(7.5)  # 3 epochs; 4 would not fit
    assert summary["time_budget_seconds"] == 8.0 and "seconds" in summary
    assert json.loads((out / "run.json").read_text())["overrides"]["epochs"] == 3
    again = FolderRequest(
        folder, 2, out, progress=False, num_workers=0, resume=True, time_budget=8.0
    )
    assert cluster_folder(again)["stages"][0]["epochs"] == 3


@pytest.mark.parametrize("text", ["ten minutes", "0", "0s", "-5m", "10", "nanm", "infh"])
def test_bad_budgets_are_one_line(tmp_path, capsys, text):
    folder = write_few_images(tmp_path / "images")
    code = main(
        ["cluster", str(folder), "--k", "2", "--out", str(tmp_path / "o"), f"--time-budget={text}"]
    )
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.startswith("error: --time-budget") and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_budgets_in_seconds_minutes_and_hours():
    assert [parse_duration(t) for t in ("90s", "10m", "1h", "1.5h")] == [90, 600, 3600, 5400]
    with pytest.raises(UserError):
        parse_duration("")

"""``--speed auto``'s trial on a fake clock: it keeps the candidate the clock makes fastest
(and today's default within the noise margin), leaves the run's weights and random state as
they were, stays within its share of the run, tries threads against DataLoader workers only
for file-backed data, and compiles only on CUDA where the compile time is paid back."""

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cluster_ssl.data.base import TensorImageDataset
from cluster_ssl.data.folder import build_folder
from cluster_ssl.engine.speed import (
    MIN_GAIN,
    SpeedChoice,
    compile_is_candidate,
    compile_pays_back,
    fastest,
)
from cluster_ssl.engine.speed_trial import (
    PASS_BATCHES,
    TrialRun,
    _cpu_has_bf16,
    loader_candidates,
)
from tests.engine.speed_clock import fake_trial

CPU = torch.device("cpu")


def small_network() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 64, 5),
    )


def in_memory(n: int = 16) -> TensorImageDataset:
    return TensorImageDataset("toy", torch.zeros(n, 3, 8, 8, dtype=torch.uint8))


def trial_run(network=None, dataset=None, **options) -> TrialRun:
    settings = {
        "network": network or small_network(),
        "input_side": 8,
        "micro_batch": 4,
        "total_steps": 10**6,
        "device": CPU,
        "precision": None,
        "dataset": dataset or in_memory(),
        "num_workers": 0,
        "threads_fixed": True,
        **options,
    }
    return TrialRun(**settings)


def pass_costs(fast: dict[int, float] | None = None) -> dict[str, float]:
    """The clock's cost of each whole-dataset pass: the same per image (a tie), except
    ``fast``'s sizes, whose cost per image is scaled by the given factor."""
    fast = fast or {}
    return {f"pass {size}": size * fast.get(size, 1.0) for size in PASS_BATCHES["cpu"]}


def test_the_fastest_candidate_wins_only_beyond_the_noise_margin():
    assert fastest({"a": 1.0, "b": 0.5}, default="a") == "b"
    assert fastest({"a": 1.0, "b": 1 - MIN_GAIN / 2}, default="a") == "a"
    assert fastest({"a": 0.5, "b": 1.0}, default="a") == "a"


def test_a_tie_keeps_todays_defaults():
    trial, _ = fake_trial(pass_costs())
    choice = trial.choose(trial_run())
    assert choice.mode == "auto"
    assert not choice.channels_last
    assert choice.pass_batch_size is None  # the device's default batch
    assert (choice.threads, choice.workers, choice.compile_backend) == (None, None, None)
    assert set(choice.measured) >= {"step nchw", "step nhwc", "pass 64", "pass 512"}


def test_channels_last_and_a_pass_batch_are_kept_when_measured_faster():
    trial, _ = fake_trial({"step nhwc": 0.5, **pass_costs({128: 0.5})})
    choice = trial.choose(trial_run())
    assert choice.channels_last
    assert choice.pass_batch_size == 128
    assert "channels_last on" in choice.describe(CPU)
    assert "batches of 128" in choice.describe(CPU)


def test_channels_last_given_by_the_user_is_not_a_candidate():
    trial, _ = fake_trial({"step nchw": 0.1, **pass_costs()})
    choice = trial.choose(trial_run(channels_last=True))
    assert choice.channels_last
    assert "step nchw" not in choice.measured


def test_a_network_without_convolutions_has_no_channels_last_candidate():
    network = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 8), nn.ReLU(), nn.Linear(8, 4))
    trial, _ = fake_trial(pass_costs())
    choice = trial.choose(trial_run(network))
    assert "step nhwc" not in choice.measured
    assert choice.pass_batch_size is None  # 512 for fully connected networks: the default


@pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no bf16 kernels")
def test_bf16_is_measured_and_said_but_never_chosen():
    trial, _ = fake_trial({"step nchw bf16": 0.5, **pass_costs()})
    choice = trial.choose(trial_run(channels_last=False))
    assert choice.bf16_speedup == pytest.approx(2.0)
    assert "--precision bf16" in choice.bf16_line()
    assert "not chosen" in choice.bf16_line()
    trial, _ = fake_trial({"step nchw bf16": 1.0, **pass_costs()})
    assert "not be faster" in trial.choose(trial_run(channels_last=False)).bf16_line()


def test_the_trial_leaves_the_weights_and_every_random_generator_as_they_were():
    network = small_network()
    before = {key: value.clone() for key, value in network.state_dict().items()}
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    trial, _ = fake_trial({"step nhwc": 0.5, **pass_costs()})
    assert trial.choose(trial_run(network)).channels_last
    after = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(after[0], expected[0]) and after[1:] == expected[1:]
    for key, value in network.state_dict().items():  # BatchNorm statistics included
        assert torch.equal(value, before[key]), key
        assert value.is_contiguous()  # the run's network keeps its memory format


def test_the_trial_keeps_to_its_share_of_the_run():
    trial, _ = fake_trial({"step nhwc": 0.5, **pass_costs({128: 0.5})}, fraction=0.05)
    choice = trial.choose(trial_run(total_steps=100))  # 5% of 100 steps: room for none
    assert not choice.channels_last and choice.pass_batch_size is None
    assert "channels_last" in choice.note and "pass batches" in choice.note
    assert set(choice.measured) == {"step nchw"}


def test_a_candidate_far_slower_than_foreseen_is_stopped_at_the_trials_share():
    trial, clock = fake_trial({"step nhwc": 1000.0, **pass_costs()}, fraction=0.2)
    choice = trial.choose(trial_run(total_steps=100))  # a step costs 1: a share of 20
    assert not choice.channels_last
    assert "step nhwc (stopped)" in choice.note and "step nhwc" not in choice.measured
    assert clock.now < 1000 + 2 * 20  # stopped after its first call, nothing timed after it


def test_a_run_too_short_to_pay_for_the_trial_is_not_measured():
    trial, clock = fake_trial()
    trial.min_run_steps = 500
    choice = trial.choose(trial_run(total_steps=499))
    assert clock.readings == 0
    assert choice == SpeedChoice(mode="auto", note=choice.note)
    assert "too short" in choice.note


def test_a_network_the_proxy_input_does_not_fit_keeps_the_defaults():
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(7, 2))  # wrong width
    trial, _ = fake_trial(pass_costs())
    choice = trial.choose(trial_run(network))
    assert choice == SpeedChoice(mode="auto", note=choice.note)
    assert "could not run" in choice.note


def test_the_choice_survives_its_record():
    choice = SpeedChoice(mode="auto", channels_last=True, pass_batch_size=128, threads=1, workers=0)
    assert SpeedChoice.from_record(choice.as_record()) == choice
    assert SpeedChoice.from_record({**choice.as_record(), "from_a_later_version": 1}) == choice


def test_thread_and_worker_candidates():
    assert loader_candidates((2, 2), cores=2, threads_fixed=False) == [
        (2, 2), (2, 0), (1, 1), (2, 1), (1, 2),
    ]  # fmt: skip
    assert loader_candidates((1, 2), cores=2, threads_fixed=True) == [(1, 2), (1, 0), (1, 1)]
    assert loader_candidates((4, 2), cores=4, threads_fixed=False) == [
        (4, 2), (4, 0), (3, 1), (4, 1), (2, 2),
    ]  # fmt: skip


def test_threads_against_workers_are_tried_for_file_backed_data_only(tmp_path):
    for i in range(24):
        Image.new("RGB", (8, 8), (i * 10, 0, 0)).save(tmp_path / f"{i}.png")
    folder = build_folder(tmp_path, "train", 8, download=False)
    costs = {"loader 1x0": 0.2, **pass_costs()}
    trial, _ = fake_trial(costs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        choice = trial.choose(trial_run(dataset=folder, num_workers=2, threads_fixed=True))
        assert torch.get_num_threads() == 1  # the trial gives the threads back
    finally:
        torch.set_num_threads(threads)
    assert {"loader 1x2", "loader 1x0", "loader 1x1"} <= set(choice.measured)
    assert (choice.threads, choice.workers) == (1, 0)
    assert "1 thread + 0 DataLoader workers" in choice.describe(CPU)
    in_memory_choice = fake_trial(costs)[0].choose(trial_run(num_workers=2))
    assert not any(label.startswith("loader") for label in in_memory_choice.measured)
    assert (in_memory_choice.threads, in_memory_choice.workers) == (None, None)


def test_torch_compile_is_a_candidate_on_cuda_only_and_only_when_it_pays_back():
    assert not compile_is_candidate(CPU, None)
    assert compile_is_candidate(torch.device("cuda", 0), None)
    assert not compile_is_candidate(torch.device("cuda", 0), "inductor")  # --compile gave it
    # 0.1 s saved a step over 1,000 steps pays back 60 s of compiling, not 120 s
    assert compile_pays_back(0.3, 0.2, 60.0, 1000)
    assert not compile_pays_back(0.3, 0.2, 120.0, 1000)
    # a gain within the noise margin is no gain, however long the run
    assert not compile_pays_back(1.0, 1 - MIN_GAIN / 2, 1.0, 10**9)


def test_the_cpu_trial_never_compiles(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.compile ran on the CPU")

    monkeypatch.setattr(torch, "compile", refuse)
    trial, _ = fake_trial(pass_costs())
    assert trial.choose(trial_run()).compile_backend is None

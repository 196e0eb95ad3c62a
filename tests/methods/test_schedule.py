"""The learning-rate schedules against their originals' formulas, written out."""

from __future__ import annotations

import math

import pytest
import torch

from cluster_ssl.commands.prepare import prepare
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.trainer import Trainer, TrainSettings
from cluster_ssl.methods.base import StageContext
from cluster_ssl.methods.optim import ScheduleSpec


def propos_cosine_annealing_lr(
    n_iter: int, iter_per_epoch: int, epochs: int, warmup: int, max_lr: float, eta_min: float
) -> float:
    """ProPos's models/basic_template.py cosine_annealing_LR, line by line."""
    epoch = n_iter / iter_per_epoch
    min_lr = max_lr * eta_min
    if epoch < warmup:
        return max_lr * epoch / warmup
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos((epoch - warmup) * math.pi / epochs))


def test_warmup_then_cosine_is_propos_cosine_annealing_lr() -> None:
    """ProPos sets the rate before each step from n_iter = step + 1 (it counts iterations
    from 1): the ramp is the same step for step; the cosine here reads the step itself, one
    step earlier, which moves the rate by at most lr * pi / (2 * total steps) (4e-6 of the
    rate for CIFAR's 1000 epochs of 196 steps)."""
    epochs, per_epoch, warmup_epochs, lr = 100, 7, 5, 0.1
    spec = ScheduleSpec("cosine", final=0.01, warmup=warmup_epochs / epochs)
    total = epochs * per_epoch
    for step in range(total):
        ours = lr * spec.factor(step, total)
        propos = propos_cosine_annealing_lr(step + 1, per_epoch, epochs, warmup_epochs, lr, 0.01)
        if step < warmup_epochs * per_epoch:
            assert ours == pytest.approx(propos, rel=1e-12)
        else:
            assert abs(ours - propos) <= lr * math.pi / (2 * total)
    next_step = propos_cosine_annealing_lr(
        warmup_epochs * per_epoch + 1, per_epoch, epochs, warmup_epochs, lr, 0.01
    )
    assert lr * spec.factor(warmup_epochs * per_epoch, total) == pytest.approx(lr)
    assert next_step < lr  # ProPos is one step further along the same curve


def test_without_warmup_the_cosine_runs_from_1_to_final() -> None:
    spec = ScheduleSpec("cosine", final=1e-3)
    assert spec.factor(0, 100) == 1.0
    assert spec.factor(50, 100) == pytest.approx(1e-3 + (1 - 1e-3) * 0.5)
    assert spec.factor(100, 100) == pytest.approx(1e-3)


def test_step_milestones_do_not_move_with_the_warmup() -> None:
    spec = ScheduleSpec("step", milestones=(0.5,), gamma=0.1, warmup=0.1)
    assert spec.factor(5, 100) == pytest.approx(6 / 10)
    assert spec.factor(49, 100) == 1.0
    assert spec.factor(50, 100) == pytest.approx(0.1)


def test_the_scheduler_applies_the_factor_to_the_optimiser() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scheduler = ScheduleSpec("cosine", final=0.01, warmup=0.1).build(optimizer, 20)
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx(0.1 / 2) and seen[1] == pytest.approx(0.1)
    assert seen[2] == pytest.approx(0.1)  # the cosine restarts at the full rate
    assert seen[-1] == pytest.approx(0.1 * ScheduleSpec("cosine", 0.01, warmup=0.1).factor(19, 20))


def scan_adjust_learning_rate(epoch: int, epochs: int, lr: float, decay_rate: float) -> float:
    """SCAN's utils/common_config.py adjust_learning_rate (cosine), set before each epoch."""
    eta_min = lr * (decay_rate**3)
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def test_per_epoch_cosine_is_scans_adjust_learning_rate() -> None:
    epochs, per_epoch, lr = 20, 9, 0.4
    spec = ScheduleSpec("cosine", final=1e-3, per_epoch=True)
    total = epochs * per_epoch
    for step in range(total):
        expected = scan_adjust_learning_rate(step // per_epoch, epochs, lr, 0.1)
        assert lr * spec.factor(step, total, per_epoch) == pytest.approx(expected, rel=1e-12)
    within_epoch = {spec.factor(step, total, per_epoch) for step in range(9, 18)}
    assert len(within_epoch) == 1  # one rate a whole epoch
    moving = ScheduleSpec("cosine", final=1e-3)
    assert len({moving.factor(step, total, per_epoch) for step in range(9, 18)}) == 9


def test_per_epoch_steps_are_torchs_multisteplr_stepped_each_epoch() -> None:
    """IDFD's main.py: MultiStepLR(milestones=[600, 950, 1300, 1650], gamma=0.1), stepped
    after each epoch; here on 40 epochs with the same fractions."""
    epochs, per_epoch = 40, 3
    parameter = torch.nn.Parameter(torch.zeros(1))
    reference = torch.optim.SGD([parameter], lr=0.03)
    multistep = torch.optim.lr_scheduler.MultiStepLR(reference, [12, 19, 26, 33], gamma=0.1)
    spec = ScheduleSpec("step", milestones=(0.3, 0.475, 0.65, 0.825), per_epoch=True)
    total = epochs * per_epoch
    for epoch in range(epochs):
        for step in range(epoch * per_epoch, (epoch + 1) * per_epoch):
            expected = reference.param_groups[0]["lr"]
            assert 0.03 * spec.factor(step, total, per_epoch) == pytest.approx(expected)
        reference.step()
        multistep.step()


def test_the_trainer_gives_the_schedule_its_steps_per_epoch(tmp_path) -> None:
    prepared = prepare(
        {
            "recipe": "simclr",
            "dataset": "digits",
            "data_root": None,
            "overrides": {
                "split": "test",
                "eval_split": None,
                "image_size": 8,
                "batch_size": 64,
                "epochs": 2,
                "eval_every": 0,
                "schedule_per_epoch": True,
            },
        }
    )
    stage = prepared.stages[0]
    rates: list[float] = []
    optimizer_of = stage.method.configure_optimizer

    def recording_optimizer():
        optimizer = optimizer_of()
        optimizer.register_step_pre_hook(
            lambda opt, args, kwargs: rates.append(opt.param_groups[0]["lr"])
        )
        return optimizer

    stage.method.configure_optimizer = recording_optimizer
    trainer = Trainer(TrainSettings(progress=False), RunLogger(tmp_path, enabled=False))
    ctx = StageContext(prepared.dataset, torch.device("cpu"), seed=0)
    trainer.fit(stage, ctx, tmp_path / "stage.pt", stage_index=0, resume=None, run_config={})
    per_epoch = len(prepared.dataset) // 64  # 359 test images, the last batch dropped
    assert len(rates) == 2 * per_epoch
    assert rates[:per_epoch] == [1e-3] * per_epoch  # epoch 0 at the full rate throughout
    second = 1e-3 * ScheduleSpec("cosine", final=1e-3).factor(per_epoch, 2 * per_epoch)
    assert rates[per_epoch:] == pytest.approx([second] * per_epoch)

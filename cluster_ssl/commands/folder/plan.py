"""What ``cluster`` tells before it trains: the run's stages and their length, the block
printed at the start, and the epochs that fit a ``--time-budget``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from cluster_ssl.config import as_dict, build_config, flat_settings
from cluster_ssl.data.description import DataDescription
from cluster_ssl.engine.trainer import Pace, format_duration
from recipes import RECIPES

#: SCAN's later stages, whose epochs follow the first stage's under a budget
LATER_EPOCHS = ("scan.epochs", "selflabel.epochs")


class BudgetMeasured(Exception):  # noqa: N818 - a signal, not an error
    """Raised by the budget's pace once the step time is measured: the run stops before
    its first checkpoint and starts again at the length that fits."""


@dataclass
class StagePlan:
    name: str
    epochs: int
    steps: int


def stage_plan(method: str, settings: dict[str, Any], num_images: int) -> list[StagePlan]:
    """The stages ``method``'s recipe builds for a folder of ``num_images`` with
    ``settings``, and their optimiser steps (one per whole batch, or DEC's ``maxiter``).

    The recipe builds its stages on a description of the folder (no image is read), so the
    plan is the run's own; the trainer replaces each stage's steps by its exact count when
    the stage starts.
    """
    recipe = RECIPES.get(method)
    config = build_config(recipe.config, recipe.preset("folder"), settings)
    side = config.image_size or 32
    folder = DataDescription("folder", (3, side, side), num_images)  # folders are read as RGB
    k = config.num_clusters or 2
    plans = []
    for stage in recipe.build(config, folder, k):
        per_epoch = (
            num_images // stage.batch_size
            if stage.drop_last
            else math.ceil(num_images / stage.batch_size)
        )
        steps = stage.epochs * max(per_epoch, 1)
        if stage.max_steps is not None:
            steps = min(steps, stage.max_steps)
        plans.append(StagePlan(stage.name, stage.epochs, steps))
    return plans


def plan_pace(plan: list[StagePlan], pace: Pace) -> Pace:
    """``pace`` told every stage's steps and epochs (so its estimate counts them all)."""
    for index, stage in enumerate(plan):
        pace.plan[index], pace.epochs[index] = stage.steps, stage.epochs
    return pace


def budget_settings(
    method: str, settings: dict[str, Any], num_images: int, pace: Pace, budget: float
) -> dict[str, Any]:
    """The epochs that fit ``budget`` seconds by ``pace``'s measured step time: the largest
    first-stage epochs (SCAN's later stages in proportion, at least 1) whose estimate fits;
    1 when even that does not."""
    default = stage_plan(method, settings, num_images)
    base = default[0].epochs

    def sized(epochs: int) -> dict[str, Any]:
        chosen = {"epochs": epochs}
        for index, key in enumerate(LATER_EPOCHS, start=1):
            if len(default) > index and key in _flat(method, settings):
                chosen[key] = max(1, round(default[index].epochs * epochs / base))
        return chosen

    def estimate(epochs: int) -> float:
        plan = stage_plan(method, {**settings, **sized(epochs)}, num_images)
        trial = Pace(step_seconds=pace.step_seconds, refresh_seconds=pace.refresh_seconds)
        return plan_pace(plan, trial).estimate() or 0.0

    low, high = 1, 2
    while estimate(high) <= budget and high < 1_000_000:
        low, high = high, high * 2
    while high - low > 1:  # the estimate grows with the epochs: the largest that fits
        middle = (low + high) // 2
        low, high = (middle, high) if estimate(middle) <= budget else (low, middle)
    return sized(low)


def _flat(method: str, settings: dict[str, Any]) -> dict[str, Any]:
    recipe = RECIPES.get(method)
    return flat_settings(as_dict(build_config(recipe.config, recipe.preset("folder"), settings)))


def start_block(
    *,
    images: int,
    skipped: int,
    out: Any,
    method: str,
    settings: dict[str, Any],
    plan: list[StagePlan],
    device: torch.device,
    budget: float | None,
) -> str:
    """The lines printed before training: what was found, what trains, on what, how long."""
    flat = _flat(method, settings)
    network = (
        f"{flat['backbone']}, width {flat.get('width', 1.0)}"
        if "backbone" in flat
        else "autoencoder"
    )
    if budget is None:
        length = "; ".join(f"{s.name} {s.epochs} epochs ({s.steps} steps)" for s in plan)
        estimate = "measured on the first steps (printed then, and shown on the progress bar)"
    else:
        length = f"sized to fit --time-budget {format_duration(budget)} (printed once measured)"
        estimate = f"at most {format_duration(budget)} of training"
    return "\n".join(
        [
            f"images found: {images}",
            f"files skipped: {skipped} (listed in {out}/skipped.txt)",
            f"method: {method}",
            f"network: {network}",
            f"image size: {flat.get('image_size', '?')}",
            f"stages: {length}",
            f"device: {device}, threads {torch.get_num_threads()}",
            f"estimated time: {estimate}",
        ]
    )

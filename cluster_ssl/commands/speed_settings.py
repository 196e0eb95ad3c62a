"""The speed settings a ``train`` (or ``cluster``) run uses: the ones its record holds
(``--resume``, or ``cluster``'s restart at the length a ``--time-budget`` chose), else
today's defaults (``--speed off``), else the fastest the trial measured (``--speed auto``).
The choice goes into the run record (``run.json`` and every stage checkpoint) before
anything trains, so every later invocation of the run computes exactly as the first."""

from __future__ import annotations

import math
from typing import Any

import torch

from cluster_ssl.commands.prepare import Prepared
from cluster_ssl.commands.record import RunRequest
from cluster_ssl.engine.speed import SpeedChoice
from cluster_ssl.engine.speed_trial import SpeedTrial, TrialRun
from cluster_ssl.engine.trainer import Stage, micro_batch
from cluster_ssl.runtime.distributed import DistInfo, broadcast_object

#: the run record's keys: the mode asked for, and the settings chosen
SPEED, SPEED_CHOICE = "speed", "speed_choice"


def settle_speed(
    record: dict[str, Any],
    request: RunRequest,
    prepared: Prepared,
    device: torch.device,
    dist: DistInfo,
    precision: torch.dtype | None,
) -> SpeedChoice:
    """The run's speed settings, written into ``record`` and printed (one line, and one
    more saying whether bf16 would be faster when the trial measured it)."""
    recorded = record.get(SPEED_CHOICE) or request.speed_choice
    if recorded is not None:
        choice, source = SpeedChoice.from_record(recorded), " (as recorded for this run)"
    elif record.get(SPEED, "off") == "off":
        choice, source = SpeedChoice(mode="off", channels_last=request.channels_last), ""
    else:
        measured = None  # rank 0 times the candidates; every rank takes its choice
        if dist.is_main:
            measured = _measure(record, request, prepared, device, precision, dist.world_size)
        choice, source = broadcast_object(measured), ""
    record[SPEED_CHOICE] = choice.as_record()
    if dist.is_main:  # on stdout, with cluster's start block; stderr keeps to diagnostics
        print(choice.describe(device) + source, flush=True)
        if not source and (line := choice.bf16_line()):
            print(line, flush=True)
    return choice


def _measure(
    record: dict[str, Any],
    request: RunRequest,
    prepared: Prepared,
    device: torch.device,
    precision: torch.dtype | None,
    world_size: int,
) -> SpeedChoice:
    first = prepared.stages[0]
    accumulate = record.get("accumulate", 1)
    return measure_stage(
        prepared,
        first,
        device,
        precision,
        micro_batch=micro_batch(first, world_size, accumulate),
        total_steps=total_steps(prepared, world_size, accumulate),
        num_workers=request.num_workers,
        channels_last=request.channels_last,
        compile_backend=request.compile_backend,
        trial=request.speed_trial,
    )


def measure_stage(
    prepared: Prepared,
    stage: Stage,
    device: torch.device,
    precision: torch.dtype | None,
    *,
    micro_batch: int,
    total_steps: int,
    num_workers: int,
    channels_last: bool,
    compile_backend: str | None,
    trial: SpeedTrial | None = None,
) -> SpeedChoice:
    """The speed trial on ``stage``'s network for a run of ``total_steps`` steps
    (``channels_last`` True: fixed on; False: a candidate)."""
    network = stage.method.network()
    if network is None:
        return SpeedChoice(mode="auto", note="the method has no network to time; defaults kept")
    return (trial or SpeedTrial()).choose(
        TrialRun(
            network=network,
            input_side=prepared.config.image_size or prepared.dataset.image_shape[-1],
            micro_batch=micro_batch,
            total_steps=total_steps,
            device=device,
            precision=precision,
            dataset=prepared.dataset,
            num_workers=num_workers,
            channels_last=True if channels_last else None,
            compile_backend=compile_backend,
        )
    )


def total_steps(prepared: Prepared, world_size: int, accumulate: int) -> int:
    """The optimiser steps of every stage of the run (as the trainer counts them)."""
    per_rank = math.ceil(len(prepared.dataset) / world_size)
    steps = 0
    for stage in prepared.stages:
        micro = micro_batch(stage, world_size, accumulate)
        batches = max(per_rank // micro, 1) if stage.drop_last else math.ceil(per_rank / micro)
        count = stage.epochs * (batches // accumulate)
        steps += count if stage.max_steps is None else min(count, stage.max_steps)
    return steps


def apply_threads(choice: SpeedChoice) -> None:
    """Torch's threads as chosen (the DataLoader workers go to the stage context)."""
    if choice.threads is not None:
        torch.set_num_threads(choice.threads)

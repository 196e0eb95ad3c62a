"""Where one training step of a recipe's stage spends its time (``benchmark.py METHOD``).

The stage is built exactly as ``cluster-ssl train`` builds it and trained by the same
:class:`~cluster_ssl.engine.trainer.Trainer`, inside a
:class:`~cluster_ssl.runtime.timing.StepTimer` that splits each step into the sections
the trainer and the methods mark: data (batches, SCAN's neighbour images), augment,
forward + backward (without the augmentation inside it), optimiser, and the refreshes
(``step_refresh``: DEC's P; ``epoch_refresh``: PCL's E-step, DeepCluster's k-means;
``setup``: k-means initialisation, SCAN's mining). The backbone alone is then timed forward
and backward on the exact input shapes it saw in a step: the ratio of the two is the
toolkit's overhead.
"""

from __future__ import annotations

import math
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cluster_ssl.commands.prepare import prepare
from cluster_ssl.commands.record import RECORD_DEFAULTS
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.trainer import Stage, Trainer, TrainSettings, compiled_module
from cluster_ssl.methods.base import StageContext
from cluster_ssl.runtime.device import autocast, resolve_device, resolve_precision
from cluster_ssl.runtime.distributed import init_distributed
from cluster_ssl.runtime.timing import StepTimer

#: the sections of a training step, in the order they are reported
STEP_SECTIONS = ("data", "augment", "forward_backward", "optimizer", "step_refresh")
#: the sections that refresh targets, pseudo-labels or neighbours from the whole dataset
REFRESH_SECTIONS = ("epoch_refresh", "step_refresh")
#: work done once per epoch or per stage, reported beside the step
OTHER_SECTIONS = ("epoch_refresh", "setup", "evaluate", "checkpoint")


@dataclass
class StepProfile:
    """The measurements of one :func:`profile_stage` call."""

    stage: str
    batch_size: int
    steps: int
    epochs_run: float
    steps_per_epoch: int
    seconds: dict[str, float]
    calls: dict[str, int]
    bare_seconds: float | None
    bare_shapes: list[tuple[int, ...]] = field(default_factory=list)
    backbone_parameters: int = 0
    parts: dict[str, float] = field(default_factory=dict)
    peak_memory_mib: float = 0.0
    world_size: int = 1

    def per_step(self, section: str) -> float:
        return self.seconds.get(section, 0.0) / self.steps

    @property
    def step_seconds(self) -> float:
        """The full step: every step section, per step."""
        return sum(self.per_step(section) for section in STEP_SECTIONS)

    @property
    def overhead_ratio(self) -> float | None:
        return None if self.bare_seconds is None else self.step_seconds / self.bare_seconds

    @property
    def epoch_seconds(self) -> float:
        """Everything the measured epochs spent training: the steps and the epoch refreshes."""
        return self.seconds.get("epoch_refresh", 0.0) + sum(
            self.seconds.get(section, 0.0) for section in STEP_SECTIONS
        )

    @property
    def refresh_share(self) -> float | None:
        """Refresh time over the epoch's time, when whole epochs were measured."""
        if self.epochs_run < 1:
            return None
        refresh = sum(self.seconds.get(section, 0.0) for section in REFRESH_SECTIONS)
        return refresh / self.epoch_seconds

    @property
    def refresh_pass_share(self) -> float | None:
        """The refreshes' passes over the dataset (features, Q) over the epoch's time."""
        if self.epochs_run < 1:
            return None
        passes = sum(self.parts.get(f"{section}/dataset_pass", 0.0) for section in REFRESH_SECTIONS)
        return passes / self.epoch_seconds


def pick_stage(stages: list[Stage], name: str | None) -> Stage:
    """The stage called ``name``, else the recipe's own method (the first stage that is
    not a pretraining / pretext stage, as SCAN's ``scan`` or DEC's ``cluster``)."""
    if name is not None:
        for stage in stages:
            if stage.name == name:
                return stage
        known = ", ".join(stage.name for stage in stages)
        raise SystemExit(f"no stage {name!r} in this recipe; its stages are: {known}")
    for stage in stages:
        if stage.name not in ("pretrain", "pretext"):
            return stage
    return stages[0]


class _InputRecorder:
    """Records the input shapes of a module's calls that build a graph (training calls)."""

    def __init__(self, module: nn.Module) -> None:
        self.shapes: list[tuple[torch.Size, torch.dtype]] = []
        self.handle = module.register_forward_pre_hook(self._record)

    def _record(self, module: nn.Module, args: tuple) -> None:
        if torch.is_grad_enabled() and args and isinstance(args[0], torch.Tensor):
            self.shapes.append((args[0].shape, args[0].dtype))


def time_bare(
    module: nn.Module,
    shapes: list[tuple[torch.Size, torch.dtype]],
    device: torch.device,
    precision: torch.dtype | None,
    repeats: int,
) -> float:
    """Seconds for one forward + backward of ``module`` over inputs of ``shapes``: the mean of
    ``repeats`` after one warm-up, the statistic of the full step it is compared with (its
    sections' total over the measured steps)."""
    inputs = [torch.randn(shape, device=device).to(dtype) for shape, dtype in shapes]
    module.train()

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for x in inputs:
            with autocast(device, precision):
                out = module(x)
            out = out[0] if isinstance(out, tuple) else out
            out.float().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    once()
    total = sum(once() for _ in range(repeats))
    module.zero_grad(set_to_none=True)
    return total / repeats


def profile_stage(
    recipe: str,
    dataset: str,
    *,
    data_root: str | None = None,
    overrides: dict[str, str] | None = None,
    stage_name: str | None = None,
    batch_size: int | None = None,
    steps: int = 20,
    warmup: int = 3,
    epochs: int | None = None,
    device_spec: str = "auto",
    precision_spec: str = "auto",
    num_workers: int = 0,
    bare_repeats: int = 5,
    accumulate: int = 1,
    channels_last: bool = False,
    compile_backend: str | None = None,
    checkpoint_every: int = 1,
    pass_batch_size: int | None = None,
) -> StepProfile:
    """Train ``warmup`` steps, then ``steps`` steps (or ``epochs`` whole epochs) of the stage
    under a :class:`StepTimer`, then time the bare backbone on the same inputs."""
    record = {
        **RECORD_DEFAULTS,
        "recipe": recipe,
        "dataset": dataset,
        "data_root": data_root,
        "overrides": dict(overrides or {}),
    }
    if batch_size is not None:
        record["overrides"].setdefault("batch_size", str(batch_size))
    device = resolve_device(device_spec)
    dist_info = init_distributed(device)  # under torchrun: every rank profiles its share
    precision = resolve_precision(precision_spec, device)
    prepared = prepare(record)
    stage = pick_stage(prepared.stages, stage_name)
    if batch_size is not None:
        stage.batch_size = batch_size
    steps_per_epoch = len(prepared.dataset) // stage.batch_size
    if steps_per_epoch == 0:
        raise SystemExit(
            f"--batch {stage.batch_size} is larger than the {len(prepared.dataset)} images; "
            "choose a smaller batch"
        )
    heldout = None if prepared.eval_dataset is prepared.dataset else prepared.eval_dataset
    ctx = StageContext(
        prepared.dataset,
        device,
        0,
        dist_info,
        num_workers=num_workers,
        heldout=heldout,
        pass_batch_size=pass_batch_size,
    )
    trainer = Trainer(
        TrainSettings(
            precision=precision,
            progress=False,
            log_every=10**9,
            accumulate=accumulate,
            channels_last=channels_last,
            compile_backend=compile_backend,
            checkpoint_every=checkpoint_every,
        ),
        RunLogger(Path(tempfile.gettempdir()), enabled=False),
    )
    with tempfile.TemporaryDirectory() as scratch:

        def train(measured_steps: int | None, measured_epochs: int | None) -> None:
            ctx.step = 0
            stage.epochs = measured_epochs or math.ceil(measured_steps / steps_per_epoch)
            stage.max_steps = measured_steps
            stage.eval_every = 0
            trainer.fit(
                stage, ctx, Path(scratch) / "stage.pt", stage_index=0, resume=None, run_config={}
            )

        if warmup:
            train(warmup, None)
        network = compiled_module(stage.method)
        recorder = _InputRecorder(network)
        with StepTimer(device) as timer:
            train(None if epochs else steps, epochs)
        recorder.handle.remove()
    measured = timer.calls["optimizer"]  # optimiser steps (each may accumulate passes)
    per_step = recorder.shapes[: len(recorder.shapes) // max(measured, 1)]
    bare = (
        time_bare(network, per_step, device, precision, bare_repeats)
        if per_step and not dist_info.enabled  # the ratio is a one-process measure
        else None
    )
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return StepProfile(
        stage=stage.name,
        batch_size=stage.batch_size,
        steps=measured,
        epochs_run=measured / steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        seconds=dict(timer.own_seconds),
        calls=dict(timer.calls),
        bare_seconds=bare,
        bare_shapes=[tuple(shape) for shape, _ in per_step],
        backbone_parameters=sum(p.numel() for p in network.parameters()),
        parts=dict(timer.parts),
        peak_memory_mib=peak,
        world_size=dist_info.world_size,
    )


def report(profile: StepProfile, device: str) -> str:
    """The profile as a Markdown table and a few summary lines."""
    step = profile.step_seconds
    lines = [
        f"stage {profile.stage!r}, batch {profile.batch_size}, {profile.steps} measured steps "
        f"({profile.epochs_run:.2f} epochs of {profile.steps_per_epoch} steps), device {device}, "
        f"{profile.world_size} process(es)",
        "",
        "| section | ms per step | share of the step |",
        "|---|---:|---:|",
    ]
    for section in STEP_SECTIONS:
        value = profile.per_step(section)
        lines.append(f"| {section} | {value * 1e3:.1f} | {value / step:.1%} |")
    lines.append(f"| **full step** | **{step * 1e3:.1f}** | 100% |")
    if profile.bare_seconds is not None:
        shapes = " + ".join("x".join(map(str, shape)) for shape in profile.bare_shapes)
        lines.append(
            f"| bare backbone forward + backward ({shapes}; "
            f"{profile.backbone_parameters / 1e6:.2f}M parameters) "
            f"| {profile.bare_seconds * 1e3:.1f} | {profile.bare_seconds / step:.1%} |"
        )
    lines.append("")
    if profile.overhead_ratio is not None:
        lines.append(f"overhead ratio (full step / bare backbone): {profile.overhead_ratio:.3f}")
    lines.append(f"images/s (all processes): {profile.batch_size / step:,.0f}")
    for section in OTHER_SECTIONS:
        if profile.calls.get(section):
            total = profile.seconds[section]
            lines.append(
                f"{section}: {total:.2f} s over {profile.calls[section]} call(s) "
                f"({total / profile.calls[section]:.2f} s each)"
            )
    for key, total in sorted(profile.parts.items()):
        section, _, part = key.rpartition("/")
        if section in profile.seconds:
            lines.append(
                f"{part} inside {section}: {total:.2f} s "
                f"({total / profile.seconds[section]:.0%} of {section})"
            )
    share = profile.refresh_share
    if share is not None:
        lines.append(
            f"refresh share of an epoch (epoch + step refreshes): {share:.1%} (the passes over "
            f"the dataset in them: {profile.refresh_pass_share:.1%} of the epoch)"
        )
    lines.append(f"peak memory: {profile.peak_memory_mib:,.0f} MiB")
    return "\n".join(lines)

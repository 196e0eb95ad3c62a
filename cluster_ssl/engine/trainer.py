"""The training loop for one stage of a run: any method, any device, one or many processes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from cluster_ssl.data.loaders import DeviceBatches, make_batches
from cluster_ssl.engine.checkpoint import save_checkpoint
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.eval.metrics import evaluate_clustering
from cluster_ssl.eval.monitor import knn_accuracy
from cluster_ssl.methods.base import Method, StageContext
from cluster_ssl.runtime.device import autocast, grad_scaler
from cluster_ssl.runtime.distributed import all_reduce_mean, barrier
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.memory import is_out_of_memory
from cluster_ssl.runtime.state import load_state_strict, rng_state, seed_everything, set_rng_state
from cluster_ssl.runtime.timing import timed

CHECKPOINT_FORMAT = 1


@dataclass
class Stage:
    """One step of a pipeline: a method and how long to train it.

    ``epochs`` bounds the stage; ``max_steps`` (optional) bounds it in optimiser steps, as
    DEC's ``maxiter`` does. A method may also end its stage early through ``stop_reason``.
    """

    name: str
    method: Method
    epochs: int
    batch_size: int
    max_steps: int | None = None
    eval_every: int = 0
    drop_last: bool = True


@dataclass
class TrainSettings:
    """Run-wide settings the trainer applies to every stage.

    A stage's ``batch_size`` is the effective (global) batch of one optimiser step: each of
    the ``world_size`` processes takes ``batch_size / (world_size * accumulate)`` images per
    forward pass and gradients are summed over ``accumulate`` passes before the step, so the
    same recipe takes the same steps on 1 or N processes (the logged losses are the mean over
    a step's passes). ``channels_last`` stores the
    method's convolution weights (and so its activations) as NHWC; ``compile_backend`` runs
    the backbone through ``torch.compile`` with that backend (``inductor`` by default).
    ``checkpoint_every`` writes the stage checkpoint every that many epochs and whenever the
    stage ends; a killed run resumes from (and replays everything after) the last one.
    """

    seed: int = 0
    precision: torch.dtype | None = None
    log_every: int = 50
    progress: bool = True
    accumulate: int = 1
    channels_last: bool = False
    compile_backend: str | None = None
    checkpoint_every: int = 1
    #: what to do when the loss becomes NaN (the CLI's options; an estimator's differ)
    nan_hint: str = (
        "lower the learning rate (--set lr=... / pretrain.lr=...) or, for `train`, use "
        "--precision fp32; the last good checkpoint is kept"
    )


@dataclass
class _StageRun:
    """Everything one call of :meth:`Trainer.fit` works with."""

    stage: Stage
    stage_index: int
    ctx: StageContext
    method: Method
    model: nn.Module
    batches: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    total_steps: int
    checkpoint_path: Path
    run_config: dict[str, Any]
    #: training time of the stage in earlier invocations, up to the checkpoint resumed from
    #: (None: unknown, the checkpoint predates stored stage times)
    seconds_before: float | None = 0.0
    #: ``time.perf_counter()`` when this invocation's training of the stage began
    started: float = 0.0

    def seconds(self) -> float:
        """This invocation's training time in the stage so far."""
        return time.perf_counter() - self.started

    def total_seconds(self) -> float | None:
        """The stage's training time so far over every invocation (None when unknown)."""
        return None if self.seconds_before is None else self.seconds_before + self.seconds()


@dataclass
class Pace:
    """Times the first steps of a run and estimates its whole training time.

    Each stage times its first ``measured_steps`` optimiser steps after ``warmup_steps``
    (real steps of the run: nothing extra runs and no random draw is taken), and its first
    whole-dataset refresh (``on_epoch_start``). The estimate is, over every stage of
    ``plan`` (stage index -> optimiser steps; the trainer fills in each stage it starts),
    steps x the stage's measured step time (the last stage measured stands in for stages not
    reached yet), plus epochs x refresh time where that was measured. ``on_measured`` is
    called once, when the first stage measured has its step time (it may raise to stop the
    run before anything is checkpointed). ``clock`` is injectable for tests.

    A few steps can misjudge a run (on a busy machine, or where data loading between steps
    and epoch ends weigh), so once ``refine_after`` seconds of steps have run, and every
    ``refine_after`` after that, :meth:`refine` re-estimates from the pace the run has
    actually kept: the time so far, plus the stage's steps left at its observed seconds a
    step (epoch refreshes, evaluations and checkpoints included), plus the later stages'
    estimate scaled by how much slower (or faster) the stage runs than measured.
    ``first_refined`` keeps the first such figure (the "after one minute" estimate).
    """

    clock: Callable[[], float] = time.perf_counter
    warmup_steps: int = 1
    measured_steps: int = 5
    plan: dict[int, int] = field(default_factory=dict)
    epochs: dict[int, int] = field(default_factory=dict)
    step_seconds: dict[int, float] = field(default_factory=dict)
    refresh_seconds: dict[int, float] = field(default_factory=dict)
    on_measured: Callable[[Pace], None] | None = None
    refine_after: float = 60.0
    first_refined: float | None = None
    _marks: list[float] = field(default_factory=list)
    _measuring: int | None = None
    _run_started: float | None = None
    _stage_started: float | None = None
    _stage_steps: int = 0
    _next_refine: float | None = None
    _now: float = 0.0

    def start_stage(self, index: int, steps: int, epochs: int) -> None:
        self.plan[index], self.epochs[index] = steps, epochs
        self._marks, self._measuring = [], (None if index in self.step_seconds else index)
        self._stage_started, self._stage_steps = None, 0

    def step_starts(self) -> None:
        """Before the stage's first step: the start of the warm-up step and of the stage's
        observed pace."""
        if self._stage_started is not None and (self._measuring is None or self._marks):
            return
        now = self.clock()
        if self._stage_started is None:
            self._stage_started = now
        if self._run_started is None:
            self._run_started = now
            self._next_refine = now + self.refine_after
        if self._measuring is not None and not self._marks:
            self._marks.append(now)

    def step_done(self) -> bool:
        """After a step; True when this step completed the stage's measurement."""
        self._stage_steps += 1
        self._now = self.clock()
        if self._measuring is None:
            return False
        self._marks.append(self._now)
        if len(self._marks) - 1 < self.warmup_steps + self.measured_steps:
            return False
        return self._measure()

    def epoch_done(self) -> bool:
        """At the end of the stage's first epoch: measure on what ran (a small folder's
        epoch can be shorter than the warm-up and measured steps). True when it measured."""
        if self._measuring is None or len(self._marks) < 2:
            return False
        return self._measure()

    def _measure(self) -> bool:
        marks, warm = self._marks, min(self.warmup_steps, len(self._marks) - 2)
        first = self.step_seconds == {}
        self.step_seconds[self._measuring] = (marks[-1] - marks[warm]) / (len(marks) - 1 - warm)
        self._measuring = None
        if first and self.on_measured is not None:
            self.on_measured(self)
        return True

    @property
    def measuring(self) -> bool:
        return self._measuring is not None

    def step_time(self, index: int) -> float | None:
        """The stage's measured step time, else that of the closest stage measured before it."""
        known = [i for i in self.step_seconds if i <= index] or list(self.step_seconds)
        return self.step_seconds[max(known)] if known else None

    def refine(self, index: int, steps_left: int) -> float | None:
        """The run's estimate from its observed pace, when ``refine_after`` seconds have
        passed since the last one (else None): see the class docstring.

        Args:
            index: the stage running.
            steps_left: its optimiser steps still to run.
        """
        now = self._now  # read by step_done: no extra reading of the clock
        measured = self.step_time(index)
        if (
            self._next_refine is None
            or now < self._next_refine
            or not self._stage_steps
            or self._stage_started is None
            or measured is None
        ):
            return None
        self._next_refine = now + self.refine_after
        observed = (now - self._stage_started) / self._stage_steps
        later = {i: steps for i, steps in self.plan.items() if i > index}
        total = now - self._run_started + steps_left * observed
        if later:
            total += (self.estimate(later) or 0.0) * observed / measured
        if self.first_refined is None:
            self.first_refined = total
        return total

    def estimate(self, plan: dict[int, int] | None = None) -> float | None:
        """Estimated training seconds of every stage of ``plan`` (default: this pace's)."""
        plan = self.plan if plan is None else plan
        if not self.step_seconds:
            return None
        total = 0.0
        for index, steps in plan.items():
            total += steps * self.step_time(index)
            if index in self.refresh_seconds:
                total += self.epochs.get(index, 0) * self.refresh_seconds[index]
        return total


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 05 min``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


class Trainer:
    """Runs a :class:`Stage` to completion, checkpointing after every epoch (or every
    ``checkpoint_every`` epochs) and at its end.

    A stage checkpoint holds the method's weights and extra state, the optimiser,
    scheduler and loss scaler, the step and epoch counters and every rank's random
    generator state, so a killed run resumed from it replays the same remaining epochs.
    """

    def __init__(
        self, settings: TrainSettings, logger: RunLogger, pace: Pace | None = None
    ) -> None:
        self.settings = settings
        self.logger = logger
        #: times the first steps; the progress bar then shows the run's estimated time
        self.pace = pace or Pace()
        self._estimate_echoed = False

    def fit(
        self,
        stage: Stage,
        ctx: StageContext,
        checkpoint_path: Path,
        *,
        stage_index: int,
        resume: dict[str, Any] | None,
        run_config: dict[str, Any],
    ) -> dict[str, Any]:
        run = self._prepare(stage, ctx, checkpoint_path, stage_index, run_config)
        resumed = resume is not None
        if not resumed:
            seed_everything(self.settings.seed + 7919 * stage_index + 104729 * ctx.dist.rank)
            run.method.eval()  # whole-dataset passes (k-means initialisation) in eval mode
            with timed("setup"):
                run.method.on_fit_start(ctx)

            epoch, stop_reason = 0, None
        else:
            epoch, stop_reason = self._restore(run, resume)
        run.model = self._distribute(run.method, ctx)
        self.pace.start_stage(stage_index, run.total_steps, stage.epochs)

        run.started = time.perf_counter()
        progress = tqdm(
            total=run.total_steps,
            initial=ctx.step,
            desc=stage.name,
            unit="step",
            disable=not (self.settings.progress and ctx.dist.is_main),
            dynamic_ncols=True,
            mininterval=1.0,
        )
        while stop_reason is None and epoch < stage.epochs:
            ctx.epoch = epoch
            run.method.eval()  # whole-dataset passes (pseudo-labels) without augmentation
            refresh_started = self.pace.clock()
            with timed("epoch_refresh"):
                start_logs = run.method.on_epoch_start(ctx)
                run.batches.set_epoch(epoch, run.method.sample_order(ctx))
            if stage_index not in self.pace.refresh_seconds:  # counted when it is measured
                self.pace.refresh_seconds[stage_index] = self.pace.clock() - refresh_started
            run.method.train()
            stop_reason = self._run_epoch_or_explain(run, progress)
            if self.pace.epoch_done():  # before the first checkpoint
                self._show_estimate(run, progress)
            epoch += 1
            epoch_logs = {**start_logs, **run.method.on_epoch_end(ctx)}

            if stage.eval_every and (epoch % stage.eval_every == 0 or epoch == stage.epochs):
                with timed("evaluate"):
                    epoch_logs.update(self.evaluate(run.method, ctx))
                self.logger.echo(f"{stage.name} epoch {epoch}: {describe(epoch_logs)}")
            if stop_reason is None and ctx.step >= run.total_steps:
                stop_reason = f"reached {run.total_steps} steps"
            epoch_logs["epoch"] = epoch
            self.logger.log(epoch_logs, step=ctx.step, stage=stage.name)
            finished = stop_reason is not None or epoch == stage.epochs
            if finished or epoch % self.settings.checkpoint_every == 0:
                with timed("checkpoint"):
                    self._save(run, epoch, stop_reason)
        progress.close()
        if stop_reason is None:
            stop_reason = f"finished {stage.epochs} epochs"
        self.logger.echo(f"stage {stage.name!r} done: {stop_reason}")
        result = {
            "stage": stage.name,
            "epochs": epoch,
            "steps": ctx.step,
            "stop_reason": stop_reason,
            "seconds": run.seconds(),
        }
        if resumed:
            result["seconds_before_resume"] = run.seconds_before
        return result

    def _prepare(self, stage, ctx, checkpoint_path, stage_index, run_config) -> _StageRun:
        method = stage.method.to(ctx.device)
        if self.settings.channels_last:
            method.to(memory_format=torch.channels_last)
        if self.settings.compile_backend is not None:
            self._compile(method, self.settings.compile_backend)
        batches = make_batches(
            ctx.dataset,
            micro_batch(stage, ctx.dist.world_size, self.settings.accumulate),
            ctx.device,
            shuffle=True,
            drop_last=stage.drop_last,
            seed=self.settings.seed + stage_index,
            dist=ctx.dist,
            num_workers=ctx.num_workers,
        )
        if isinstance(batches, DeviceBatches):  # images_at indexes the same device copy
            ctx.device_images = batches.images
        ctx.network = method.network()  # sets the batch of the stage's whole-dataset passes
        ctx.precision = self.settings.precision  # and their precision: the training steps'
        if len(batches) < self.settings.accumulate:
            raise UserError(
                f"stage {stage.name!r}: --accumulate {self.settings.accumulate} needs that many "
                f"batches an epoch, but its data make {len(batches)}; accumulate less"
            )
        steps_per_epoch = len(batches) // self.settings.accumulate
        total_steps = stage.epochs * steps_per_epoch
        if stage.max_steps is not None:
            total_steps = min(total_steps, stage.max_steps)
        optimizer = method.configure_optimizer()
        return _StageRun(
            stage=stage,
            stage_index=stage_index,
            ctx=ctx,
            method=method,
            model=method,
            batches=batches,
            optimizer=optimizer,
            scheduler=method.configure_scheduler(optimizer, total_steps, steps_per_epoch),
            scaler=grad_scaler(ctx.device, self.settings.precision),
            total_steps=total_steps,
            checkpoint_path=checkpoint_path,
            run_config=run_config,
        )

    @staticmethod
    def _compile(method: Method, backend: str) -> None:
        try:
            compiled_module(method).compile(backend=backend)
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - torch's errors for an unusable backend
            raise UserError(
                f"--compile {backend}: torch.compile refused it ({error}); use inductor "
                "(the default), or drop --compile"
            ) from None

    def _restore(self, run: _StageRun, resume: dict[str, Any]) -> tuple[int, str | None]:
        saved_world = len(resume["rng"])
        if saved_world != run.ctx.dist.world_size:
            raise UserError(
                f"stage {run.stage.name!r} was checkpointed by {saved_world} process(es) and is "
                f"resumed by {run.ctx.dist.world_size}; resume with the same number of "
                "processes, or start a new --out"
            )
        load_state_strict(run.method, resume["method"], f"stage {run.stage.name!r}")

        run.optimizer.load_state_dict(resume["optimizer"])
        if run.scheduler is not None:
            run.scheduler.load_state_dict(resume["scheduler"])
        if resume["scaler"]:  # empty when the run was not scaling (fp32 / bf16)
            run.scaler.load_state_dict(resume["scaler"])

        set_rng_state(resume["rng"][run.ctx.dist.rank])
        run.ctx.step = resume["step"]
        run.seconds_before = resume.get("seconds")  # absent from older checkpoints
        self.logger.echo(
            f"resuming stage {run.stage.name!r} after epoch {resume['epoch']}, step {run.ctx.step}"
        )
        return resume["epoch"], resume["stop_reason"]

    @staticmethod
    def _distribute(method: Method, ctx: StageContext) -> nn.Module:
        """DDP (with SyncBatchNorm on CUDA) around the method when there are several ranks."""
        if not ctx.dist.enabled:
            return method
        model: nn.Module = method
        if ctx.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(method)
        return DistributedDataParallel(
            model,
            device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=method.find_unused_parameters,
            broadcast_buffers=method.broadcast_buffers,
        )

    def _run_epoch(self, run: _StageRun, progress: tqdm) -> str | None:
        ctx, method, accumulate = run.ctx, run.method, self.settings.accumulate
        nonfinite = torch.zeros((), dtype=torch.bool, device=ctx.device)
        reason = None
        batches = iter(run.batches)
        self.pace.step_starts()
        for _ in range(len(run.batches) // accumulate):  # whole optimiser steps only
            with timed("step_refresh"):
                method.on_step_start(ctx)
            reason = method.stop_reason()
            if reason is not None:
                break
            run.optimizer.zero_grad(set_to_none=True)
            step_scalars: dict[str, torch.Tensor] = {}
            for micro in range(accumulate):
                with timed("data"):
                    batch = method.prepare_batch(next(batches), ctx)
                last = micro == accumulate - 1
                with timed("forward_backward"), self._gradient_sync(run.model, last):
                    with autocast(ctx.device, self.settings.precision):
                        outputs = run.model(batch)
                    loss = outputs["loss"]
                    nonfinite |= ~torch.isfinite(loss.detach())  # on the device: no sync
                    run.scaler.scale(loss / accumulate).backward()
                add_pass_mean(step_scalars, outputs, accumulate)
            with timed("optimizer"):
                run.scaler.step(run.optimizer)
                run.scaler.update()
                if run.scheduler is not None:
                    run.scheduler.step()
            ctx.step += 1
            method.on_step_end(ctx)
            progress.update()
            if self.pace.measuring and ctx.device.type == "cuda":  # time the kernels too
                torch.cuda.synchronize(ctx.device)
            if self.pace.step_done():
                self._show_estimate(run, progress)
            self._refine_estimate(run, progress)
            if ctx.step % self.settings.log_every == 0 or ctx.step == run.total_steps:
                self._check_finite(nonfinite, run)
                logs = self._step_logs(step_scalars, run.optimizer)
                progress.set_postfix(epoch=ctx.epoch + 1, loss=f"{logs['loss']:.4g}")
                self.logger.log(logs, step=ctx.step, stage=run.stage.name)
            if ctx.step >= run.total_steps:
                break
        self._check_finite(nonfinite, run)  # before anything is checkpointed
        return reason

    def _refine_estimate(self, run: _StageRun, progress: tqdm) -> None:
        """The estimate from the pace kept so far, each minute; echoed after the first."""
        first = self.pace.first_refined is None
        total = self.pace.refine(run.stage_index, run.total_steps - run.ctx.step)
        if total is None:
            return
        progress.set_description(f"{run.stage.name} (run ~{format_duration(total)})")
        if first:
            self.logger.echo(
                f"estimated training time after the first minute: ~{format_duration(total)} "
                "(at the pace kept so far)"
            )

    def _show_estimate(self, run: _StageRun, progress: tqdm) -> None:
        """The run's estimated training time on the progress bar; echoed the first time."""
        total = self.pace.estimate()
        if total is None:
            return
        progress.set_description(f"{run.stage.name} (run ~{format_duration(total)})")
        if not self._estimate_echoed:
            self._estimate_echoed = True
            step = self.pace.step_seconds[run.stage_index]
            self.logger.echo(
                f"estimated training time: ~{format_duration(total)} "
                f"({step:.3g} s a step in {run.stage.name!r}, measured on its first steps)"
            )

    def _run_epoch_or_explain(self, run: _StageRun, progress: Any) -> str | None:
        """:meth:`_run_epoch`, with a failed allocation as one line naming what to lower."""
        try:
            return self._run_epoch(run, progress)
        except (MemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            raise UserError(
                f"out of memory in stage {run.stage.name!r} with batches of "
                f"{run.stage.batch_size} images on {run.ctx.device}; lower the batch size "
                f"(--set batch_size=...), the image size or the network's width, or use "
                f"--accumulate N; the last good checkpoint is kept"
            ) from None

    @staticmethod
    def _gradient_sync(model: nn.Module, last: bool) -> contextlib.AbstractContextManager:
        """DDP's all-reduce only on the last accumulation pass of a step."""
        if last or not isinstance(model, DistributedDataParallel):
            return contextlib.nullcontext()
        return model.no_sync()

    def _check_finite(self, nonfinite: torch.Tensor, run: _StageRun) -> None:
        if bool(all_reduce_mean(nonfinite.float()) > 0):
            raise UserError(
                f"the loss became NaN or infinite in stage {run.stage.name!r} during epoch "
                f"{run.ctx.epoch + 1} (by step {run.ctx.step}); {self.settings.nan_hint}"
            )

    @staticmethod
    def _step_logs(scalars: dict[str, torch.Tensor], optimizer) -> dict[str, float]:
        logs = {key: all_reduce_mean(value).item() for key, value in scalars.items()}
        logs["lr"] = optimizer.param_groups[0]["lr"]
        return logs

    @torch.no_grad()
    def evaluate(self, method: Method, ctx: StageContext) -> dict[str, Any]:
        """The online monitor: the method's clustering of the run's evaluation split (the
        held-out split where the run has one, as its final line scores; else the training
        data) scored against the labels when there are any, kNN accuracy of its embedding,
        and a collapse warning."""
        scored = ctx
        if ctx.heldout is not None:
            scored = replace(ctx, dataset=ctx.heldout, training_data=False, device_images=None)
        method.eval()
        prediction = method.predict(scored)
        method.train()
        labels = scored.dataset.labels
        metrics = evaluate_clustering(labels, prediction.labels, prediction.num_clusters)
        if prediction.embedding is not None and labels is not None:
            embedding = prediction.embedding
            metrics["knn_acc"] = ctx.on_main(lambda: knn_accuracy(embedding, labels))

        if metrics["clusters_used"] < prediction.num_clusters:
            self.logger.echo(
                f"warning: collapse at epoch {ctx.epoch + 1}: only {metrics['clusters_used']} "
                f"of {prediction.num_clusters} clusters are used; {method.collapse_hint()}"
            )
        self.logger.log_histogram("cluster_sizes", metrics["cluster_sizes"], stage="eval")
        return metrics

    def _save(self, run: _StageRun, epoch: int, stop_reason: str | None) -> None:
        ctx = run.ctx
        rng = [rng_state()]
        if ctx.dist.enabled:
            rng = [None] * ctx.dist.world_size
            torch_dist.all_gather_object(rng, rng_state())
        if ctx.dist.is_main:
            save_checkpoint(
                {
                    "format": CHECKPOINT_FORMAT,
                    "stage": run.stage.name,
                    "stage_index": run.stage_index,
                    "epoch": epoch,
                    "step": ctx.step,
                    "stop_reason": stop_reason,
                    "seconds": run.total_seconds(),
                    "method": run.method.state_dict(),
                    "optimizer": run.optimizer.state_dict(),
                    "scheduler": None if run.scheduler is None else run.scheduler.state_dict(),
                    "scaler": run.scaler.state_dict(),
                    "rng": rng,
                    "run": run.run_config,
                },
                run.checkpoint_path,
            )
        barrier()


def add_pass_mean(
    totals: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor], passes: int
) -> None:
    """Add one accumulation pass's scalar outputs (loss and its terms), divided by the number
    of passes, to ``totals``: after the last pass each is the step's mean over its passes.
    Stays on the device (no synchronisation)."""
    for key, value in outputs.items():
        if value.ndim == 0:
            share = value.detach().float() / passes
            totals[key] = totals[key] + share if key in totals else share


def micro_batch(stage: Stage, world_size: int, accumulate: int) -> int:
    """Images per forward pass of one process: the stage's (effective) batch over the
    processes and the accumulation passes."""
    parts = world_size * accumulate
    if stage.batch_size % parts:
        raise UserError(
            f"stage {stage.name!r}: batch size {stage.batch_size} does not split evenly over "
            f"{world_size} process(es) x {accumulate} accumulation pass(es); set that stage's "
            f"batch size (--set batch_size=..., or the stage's own, such as scan.batch_size) "
            f"to a multiple of {parts}"
        )
    return stage.batch_size // parts


def compiled_module(method: Method) -> nn.Module:
    """The part of a method ``torch.compile`` takes: its network (backbone or autoencoder;
    augmentation, losses and Python-side bookkeeping stay eager)."""
    network = method.network()
    if network is None:
        raise UserError(f"{type(method).__name__} has no backbone to compile; drop --compile")
    return network


def describe(metrics: dict[str, Any]) -> str:
    """``ACC 0.8123  NMI 0.7012  ...`` for the metrics that are present."""
    names = ("acc", "nmi", "ari", "knn_acc", "clusters_used")
    return "  ".join(
        f"{name.upper()} {metrics[name]:.4f}"
        if isinstance(metrics[name], float)
        else f"{name.upper()} {metrics[name]}"
        for name in names
        if name in metrics
    )

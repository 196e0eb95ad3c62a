"""The training loop for one stage of a run: any method, any device, one or many processes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from cluster_ssl.engine.checkpoint import (
    load_state_strict,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from cluster_ssl.engine.device import autocast, grad_scaler
from cluster_ssl.engine.distributed import all_reduce_mean, barrier
from cluster_ssl.engine.loaders import make_batches
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.errors import UserError
from cluster_ssl.eval.metrics import evaluate_clustering
from cluster_ssl.eval.monitor import knn_accuracy
from cluster_ssl.methods.base import Method, StageContext

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
    """Run-wide settings the trainer applies to every stage."""

    seed: int = 0
    precision: torch.dtype | None = None
    log_every: int = 50
    progress: bool = True


class Trainer:
    """Runs a :class:`Stage` to completion, checkpointing after every epoch.

    A stage checkpoint holds the method's weights and extra state, the optimiser,
    scheduler and loss scaler, the step and epoch counters and every rank's random
    generator state, so a killed run resumed from it replays the same remaining epochs.
    """

    def __init__(self, settings: TrainSettings, logger: RunLogger) -> None:
        self.settings = settings
        self.logger = logger

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
        method = stage.method.to(ctx.device)
        batches = make_batches(
            ctx.dataset,
            stage.batch_size,
            ctx.device,
            shuffle=True,
            drop_last=stage.drop_last,
            seed=self.settings.seed + stage_index,
            dist=ctx.dist,
            num_workers=ctx.num_workers,
        )
        steps_per_epoch = len(batches)
        total_steps = stage.epochs * steps_per_epoch
        if stage.max_steps is not None:
            total_steps = min(total_steps, stage.max_steps)
        optimizer = method.configure_optimizer()
        scheduler = method.configure_scheduler(optimizer, total_steps)
        scaler = grad_scaler(ctx.device, self.settings.precision)

        if resume is None:
            seed_everything(self.settings.seed + 7919 * stage_index + 104729 * ctx.dist.rank)
            method.train()
            method.on_fit_start(ctx)
            start_epoch, stop_reason = 0, None
        else:
            load_state_strict(method, resume["method"], f"stage {stage.name!r}")
            optimizer.load_state_dict(resume["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(resume["scheduler"])
            scaler.load_state_dict(resume["scaler"])
            set_rng_state(resume["rng"][ctx.dist.rank])
            ctx.step, start_epoch = resume["step"], resume["epoch"]
            stop_reason = resume["stop_reason"]
            self.logger.echo(
                f"resuming stage {stage.name!r} after epoch {start_epoch}, step {ctx.step}"
            )

        model: nn.Module = method
        if ctx.dist.enabled:
            if ctx.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(method)
            model = DistributedDataParallel(
                model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=method.find_unused_parameters,
                broadcast_buffers=method.broadcast_buffers,
            )

        started = time.perf_counter()
        epoch = start_epoch
        progress = tqdm(
            total=total_steps,
            initial=ctx.step,
            desc=stage.name,
            unit="step",
            disable=not (self.settings.progress and ctx.dist.is_main),
            dynamic_ncols=True,
            mininterval=1.0,
        )
        while stop_reason is None and epoch < stage.epochs:
            ctx.epoch = epoch
            batches.set_epoch(epoch)
            method.train()
            stop_reason = self._run_epoch(
                stage,
                model,
                method,
                batches,
                optimizer,
                scheduler,
                scaler,
                ctx,
                total_steps,
                progress,
            )
            epoch += 1
            epoch_logs = method.on_epoch_end(ctx)
            if stage.eval_every and (epoch % stage.eval_every == 0 or epoch == stage.epochs):
                epoch_logs.update(self.evaluate(method, ctx))
                self.logger.echo(f"{stage.name} epoch {epoch}: {describe(epoch_logs)}")
            if stop_reason is None and ctx.step >= total_steps:
                stop_reason = f"reached {total_steps} steps"
            epoch_logs["epoch"] = epoch
            self.logger.log(epoch_logs, step=ctx.step, stage=stage.name)
            self._save(
                checkpoint_path,
                stage,
                stage_index,
                method,
                optimizer,
                scheduler,
                scaler,
                ctx,
                epoch,
                stop_reason,
                run_config,
            )
        progress.close()
        if stop_reason is None:
            stop_reason = f"finished {stage.epochs} epochs"
        self.logger.echo(f"stage {stage.name!r} done: {stop_reason}")
        return {
            "stage": stage.name,
            "epochs": epoch,
            "steps": ctx.step,
            "stop_reason": stop_reason,
            "seconds": time.perf_counter() - started,
        }

    def _run_epoch(
        self,
        stage,
        model,
        method,
        batches,
        optimizer,
        scheduler,
        scaler,
        ctx,
        total_steps,
        progress,
    ) -> str | None:
        nonfinite = torch.zeros((), dtype=torch.bool, device=ctx.device)
        reason = None
        for batch in batches:
            method.on_step_start(ctx)
            reason = method.stop_reason()
            if reason is not None:
                break
            with autocast(ctx.device, self.settings.precision):
                outputs = model(batch)
            loss = outputs["loss"]
            nonfinite |= ~torch.isfinite(loss.detach())  # on the device: no sync per step
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            ctx.step += 1
            progress.update()
            if ctx.step % self.settings.log_every == 0 or ctx.step == total_steps:
                self._check_finite(nonfinite, stage, ctx)
                logs = self._step_logs(outputs, optimizer)
                progress.set_postfix(epoch=ctx.epoch + 1, loss=f"{logs['loss']:.4g}")
                self.logger.log(logs, step=ctx.step, stage=stage.name)
            if ctx.step >= total_steps:
                break
        self._check_finite(nonfinite, stage, ctx)  # before anything is checkpointed
        return reason

    @staticmethod
    def _check_finite(nonfinite: torch.Tensor, stage: Stage, ctx: StageContext) -> None:
        if bool(all_reduce_mean(nonfinite.float()) > 0):
            raise UserError(
                f"the loss became NaN or infinite in stage {stage.name!r} during epoch "
                f"{ctx.epoch + 1} (by step {ctx.step}); lower the learning rate "
                "(--set lr=... / pretrain_lr=...) or use --precision fp32; "
                "the last good checkpoint is kept"
            )

    @staticmethod
    def _step_logs(outputs: dict[str, torch.Tensor], optimizer) -> dict[str, float]:
        logs = {
            key: all_reduce_mean(value.detach().float()).item()
            for key, value in outputs.items()
            if value.ndim == 0
        }
        logs["lr"] = optimizer.param_groups[0]["lr"]
        return logs

    @torch.no_grad()
    def evaluate(self, method: Method, ctx: StageContext) -> dict[str, Any]:
        """The online monitor: the method's clustering scored against the labels (when
        there are any), kNN accuracy of its embedding, and a collapse warning."""
        method.eval()
        prediction = method.predict(ctx)
        method.train()
        metrics = evaluate_clustering(
            ctx.dataset.labels, prediction.labels, prediction.num_clusters
        )
        if prediction.embedding is not None and ctx.dataset.labels is not None:
            metrics["knn_acc"] = knn_accuracy(prediction.embedding, ctx.dataset.labels)
        if metrics["clusters_used"] < prediction.num_clusters:
            self.logger.echo(
                f"warning: collapse at epoch {ctx.epoch + 1}: only {metrics['clusters_used']} "
                f"of {prediction.num_clusters} clusters are used; {method.collapse_hint()}"
            )
        self.logger.log_histogram("cluster_sizes", metrics["cluster_sizes"], stage="eval")
        return metrics

    def _save(
        self,
        path,
        stage,
        stage_index,
        method,
        optimizer,
        scheduler,
        scaler,
        ctx,
        epoch,
        stop_reason,
        run_config,
    ) -> None:
        rng = [rng_state()]
        if ctx.dist.enabled:
            rng = [None] * ctx.dist.world_size
            torch_dist.all_gather_object(rng, rng_state())
        if ctx.dist.is_main:
            save_checkpoint(
                {
                    "format": CHECKPOINT_FORMAT,
                    "stage": stage.name,
                    "stage_index": stage_index,
                    "epoch": epoch,
                    "step": ctx.step,
                    "stop_reason": stop_reason,
                    "method": method.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict(),
                    "rng": rng,
                    "run": run_config,
                },
                path,
            )
        barrier()


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

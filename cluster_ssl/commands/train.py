"""``cluster-ssl train``: claim the run directory, run every stage (resuming where one
stopped), evaluate, and write ``summary.json``.

Run directory layout::

    OUT/run.json              what was asked for (recipe, dataset, settings) and the speed
                              settings kept (``--speed``), written first
    OUT/config.json           every resolved setting
    OUT/stages/NN-NAME.pt     one checkpoint per stage, rewritten atomically every epoch (or N)
    OUT/metrics.jsonl         one JSON line per logged event
    OUT/summary.json          final ACC / NMI / ARI, clusters used, time; written last
    OUT/wandb/                W&B run files when --wandb offline|online
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.commands.claim import claim_out_dir
from cluster_ssl.commands.prepare import prepare
from cluster_ssl.commands.record import TRAINING_DATA, RunRequest
from cluster_ssl.commands.speed_settings import apply_threads, settle_speed
from cluster_ssl.config import (
    as_dict,
)
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.data.description import DataDescription
from cluster_ssl.engine.init_from import init_network_from
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.stages import (
    fit_stages,
    stage_path,
    with_earlier_seconds,
)
from cluster_ssl.engine.trainer import Stage, Trainer, TrainSettings, micro_batch
from cluster_ssl.eval.metrics import evaluate_clustering
from cluster_ssl.methods.base import Method, StageContext
from cluster_ssl.runtime.device import resolve_device, resolve_precision
from cluster_ssl.runtime.distributed import DistInfo, init_distributed
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.files import write_array, write_json
from cluster_ssl.runtime.lock import lock_directory
from cluster_ssl.runtime.state import seed_everything


def train(request: RunRequest) -> dict[str, Any]:
    """Run (or resume) a recipe end to end; returns the summary that was written.

    The run directory is locked for the whole command (one writer per run); under
    ``torchrun`` rank 0 holds the lock for all ranks.
    """
    out = Path(request.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory; choose another --out")
    main_rank = os.environ.get("RANK", "0") == "0"
    with lock_directory(out) if main_rank else contextlib.nullcontext():
        return _train(request)


def _train(request: RunRequest) -> dict[str, Any]:
    started = time.perf_counter()
    out = Path(request.out)
    device = resolve_device(request.device)
    record = claim_out_dir(out, request, device)
    dist = init_distributed(device)
    precision = resolve_precision(record["precision"], device)
    seed_everything(record["seed"])  # model initialisation happens in prepare()
    prepared = prepare(record)
    for stage in prepared.stages:  # every stage's batch splits, before any trains
        micro_batch(stage, dist.world_size, record.get("accumulate", 1))
    initialised = None  # before anything is written: a bad --init-from leaves no trace
    if record.get("init_from") and not stage_path(out, 0, prepared.stages[0]).exists():
        initialised = init_network_from(prepared.stages[0].method, Path(record["init_from"]))
    speed = settle_speed(record, request, prepared, device, dist, precision)
    apply_threads(speed)
    num_workers = request.num_workers if speed.workers is None else speed.workers
    config_dict = {
        **record,
        "config": as_dict(prepared.config),
        TRAINING_DATA: DataDescription.of(prepared.dataset).as_record(),
    }
    logger = RunLogger(
        out,
        enabled=dist.is_main,
        wandb_mode=request.wandb,
        config=config_dict,
        group=f"{record['recipe']}/{record['dataset']}",
        name=out.name,
    )
    if dist.is_main:
        write_json(record, out / "run.json")
        write_json(config_dict["config"], out / "config.json")
    if initialised is not None:
        logger.echo(initialised)
    settings = TrainSettings(
        seed=record["seed"],
        precision=precision,
        progress=request.progress,
        accumulate=record.get("accumulate", 1),  # runs recorded before the option: 1
        channels_last=request.channels_last or speed.channels_last,
        compile_backend=request.compile_backend or speed.compile_backend,
        checkpoint_every=request.checkpoint_every,
    )
    trainer = Trainer(settings, logger, pace=request.pace)
    heldout = None if prepared.eval_dataset is prepared.dataset else prepared.eval_dataset
    ctx = StageContext(
        prepared.dataset,
        device,
        record["seed"],
        dist,
        pass_batch_size=speed.pass_batch_size,
        num_workers=num_workers,
        heldout=heldout,
    )

    stage_results = fit_stages(prepared.stages, ctx, trainer, out, config_dict)
    final = prepared.stages[-1]
    final_path = stage_path(out, len(prepared.stages) - 1, final)
    trained_on_eval_data = prepared.eval_dataset is prepared.dataset
    prediction = predict_method(
        final,
        prepared.eval_dataset,
        device,
        dist,
        record["seed"],
        training_data=trained_on_eval_data,
        num_workers=num_workers,
        pass_batch_size=speed.pass_batch_size,
    )
    if dist.is_main and trained_on_eval_data:
        keep_centres(final.method, prediction, final_path)
    metrics = evaluate_clustering(
        prepared.eval_dataset.labels, prediction.labels, prediction.num_clusters
    )
    summary = {
        "recipe": record["recipe"],
        "dataset": record["dataset"],
        "split": prepared.config.split,
        "eval_split": prepared.config.eval_split or prepared.config.split,
        "seed": record["seed"],
        "num_clusters": prepared.num_clusters,
        "num_images": len(prepared.eval_dataset),
        **metrics,
        "stages": stage_results,
        "checkpoint": str(final_path),
        "device": str(device),
        "world_size": dist.world_size,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if any("seconds_before_resume" in result for result in stage_results):
        summary["seconds_with_earlier_invocations"] = with_earlier_seconds(
            summary["seconds"], stage_results
        )
    logger.forget(lambda event: event.get("stage") == "final")  # of a killed summary write
    logger.log(
        {k: v for k, v in metrics.items() if k != "cluster_sizes"}, step=ctx.step, stage="final"
    )
    if logger.wandb_enabled:  # cluster grids, embedding map and a per-cluster table
        from cluster_ssl.report.run_report import sample_names, write_report_dir

        write_report_dir(
            out / "report",
            prepared.eval_dataset,
            prediction,
            title=f"{record['recipe']} on {record['dataset']}",
            facts={"run": str(out)},
            names=sample_names(prepared.eval_dataset),
        )
        logger.log_report(out / "report", metrics["cluster_sizes"])
    if dist.is_main:
        write_json(summary, out / "summary.json")
    logger.finish(summary)
    return summary


def predict_method(
    stage: Stage,
    dataset: ImageDataset,
    device: torch.device,
    dist: DistInfo,
    seed: int,
    *,
    training_data: bool,
    num_workers: int = 2,
    pass_batch_size: int | None = None,
) -> Prediction:
    """A stage's method's clustering of ``dataset`` (labels, confidence, embedding).

    ``training_data`` says whether ``dataset`` is the split the stage trained on (a method
    may then use state it holds per training sample, such as IDFD's memory bank).
    ``pass_batch_size`` is the batch of its passes (None: the device's default).
    """
    method = stage.method.to(device).eval()
    ctx = StageContext(
        dataset,
        device,
        seed,
        dist,
        num_workers=num_workers,
        training_data=training_data,
        network=method.network(),
        pass_batch_size=pass_batch_size,
    )
    with torch.no_grad():
        return method.predict(ctx)


def centres_path(checkpoint: Path) -> Path:
    """Where a run keeps the k-means centres of its final clustering of the training data
    beside the stage checkpoint (``stages/02-x.pt`` -> ``stages/02-x.centres.npy``):
    ``predict`` assigns new images to them, so cluster ids stay those of the run's
    assignments (``cluster``'s ``assignments.csv``) even if the folder changed, and the
    training data need not be read again."""
    return Path(checkpoint).with_suffix(".centres.npy")


def keep_centres(method: Method, prediction: Prediction, checkpoint: Path) -> None:
    """Write the centres of ``method``'s clustering of its training data beside its stage
    checkpoint (:func:`centres_path`) when its :meth:`~Method.predict_new` would otherwise
    find them again from the training images (methods that cluster by k-means)."""
    if prediction.centres is not None and method.predict_new_reads_training_data():
        write_array(np.asarray(prediction.centres), centres_path(checkpoint))

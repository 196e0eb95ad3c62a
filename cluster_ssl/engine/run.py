"""A whole run: resolve the recipe and data, run every stage (resuming where one stopped),
evaluate, and write ``summary.json``.

Run directory layout::

    OUT/run.json              what was asked for (recipe, dataset, settings), written first
    OUT/stages/NN-NAME.pt     one checkpoint per stage, rewritten atomically every epoch (or N)
    OUT/metrics.jsonl         one JSON line per logged event
    OUT/summary.json          final ACC / NMI / ARI, clusters used, time; written last
    OUT/wandb/                W&B run files when --wandb offline|online
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cluster_ssl.config import (
    DEFAULT_DATASET,
    DEFAULT_RECIPE,
    as_dict,
    build_config,
    parse_value,
)
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.data.description import DataDescription
from cluster_ssl.data.registry import DATASETS, build_dataset
from cluster_ssl.engine.checkpoint import (
    load_checkpoint,
    load_state_strict,
    seed_everything,
    write_array,
    write_json,
)
from cluster_ssl.engine.device import resolve_device, resolve_precision
from cluster_ssl.engine.distributed import DistInfo, init_distributed
from cluster_ssl.engine.init_from import init_network_from
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.trainer import Stage, Trainer, TrainSettings, micro_batch
from cluster_ssl.errors import UserError
from cluster_ssl.eval.metrics import evaluate_clustering
from cluster_ssl.methods.base import Method, Prediction, StageContext
from cluster_ssl.recipe import Recipe


@dataclass
class RunRequest:
    """Everything ``cluster-ssl train`` was asked to do.

    ``None`` means "not given": the default for a new run, the stored value on ``--resume``.
    """

    recipe: str | None = None
    dataset: str | None = None
    out: Path = Path("runs/run")
    data_root: str | None = None
    download: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    device: str = "auto"
    precision: str | None = None
    accumulate: int | None = None
    #: a stage checkpoint or run directory whose network starts this run's
    init_from: str | None = None
    channels_last: bool = False
    compile_backend: str | None = None
    checkpoint_every: int = 1
    wandb: str = "disabled"
    resume: bool = False
    progress: bool = True
    num_workers: int = 2
    #: extra arguments of the dataset builder (e.g. ``skip_unreadable`` for folders)
    dataset_options: dict[str, Any] = field(default_factory=dict)

    def given(self) -> dict[str, Any]:
        """The parts of the run record that were asked for explicitly."""
        asked = {
            "recipe": self.recipe,
            "dataset": self.dataset,
            "overrides": self.overrides or None,
            "seed": self.seed,
            "precision": self.precision,
            "accumulate": self.accumulate,
            "init_from": self.init_from,
        }
        return {key: value for key, value in asked.items() if value is not None}

    def record(self) -> dict[str, Any]:
        """The record of a new run: what was given, defaults for the rest."""
        return {
            **RECORD_DEFAULTS,
            **self.given(),
            "data_root": self.data_root,
            "download": self.download,
            "dataset_options": self.dataset_options,
        }


RECORD_DEFAULTS: dict[str, Any] = {
    "recipe": DEFAULT_RECIPE,
    "dataset": DEFAULT_DATASET,
    "overrides": {},
    "seed": 0,
    "precision": "auto",
    "accumulate": 1,
}


#: a checkpoint's record of its training data (:class:`DataDescription`)
TRAINING_DATA = "training_data"


def get_recipe(name: str) -> Recipe:
    from recipes import RECIPES

    return RECIPES.get(name)


@dataclass
class Prepared:
    """A run's resolved pieces: config, data and stages."""

    recipe: Recipe
    config: Any
    dataset: ImageDataset
    eval_dataset: ImageDataset
    num_clusters: int
    stages: list[Stage]


def prepare(record: dict[str, Any], with_data: bool = True) -> Prepared:
    """Rebuild a run from its record (``run.json`` or a checkpoint's ``run`` entry).

    ``with_data=False`` builds it from the description of its training data that a
    checkpoint records, reading no images (both datasets are that description); records
    without one load the data.
    """
    recipe = get_recipe(record["recipe"])
    config = build_config(recipe.config, recipe.preset(record["dataset"]), record["overrides"])
    eval_split = config.eval_split or config.split
    if not with_data and TRAINING_DATA in record:
        dataset = eval_dataset = DataDescription.from_record(record[TRAINING_DATA])
    else:
        dataset = _load(record, "split", config.split, config.image_size)
        eval_dataset = (
            dataset
            if eval_split == config.split
            else _load(record, "eval_split", eval_split, config.image_size)
        )
    num_clusters = config.num_clusters or dataset.num_classes
    if num_clusters is None:
        raise UserError(
            f"dataset {record['dataset']!r} has no labels to count clusters from; "
            "pass --set num_clusters=K"
        )
    for split, data in ((config.split, dataset), (eval_split, eval_dataset)):
        if num_clusters > len(data):
            raise UserError(
                f"num_clusters={num_clusters} is larger than the {len(data)} images in "
                f"{record['dataset']!r} ({split}); lower --set num_clusters or add images"
            )
    stages = build_stages(recipe, config, dataset, num_clusters)
    return Prepared(recipe, config, dataset, eval_dataset, num_clusters, stages)


def build_stages(
    recipe: Recipe, config: Any, dataset: ImageDataset, num_clusters: int
) -> list[Stage]:
    """The recipe's stages for ``dataset``, every optimiser and schedule built up front (so
    a bad setting fails before stage 1 trains); a setting a model rejects is a UserError."""
    try:
        stages = recipe.build(config, dataset, num_clusters)
    except UserError:
        raise
    except ValueError as error:  # a setting the model or method rejects
        raise UserError(f"invalid settings for {recipe.name}: {error}") from None
    for stage in stages:
        stage.method.configure_scheduler(stage.method.configure_optimizer(), 1)
    return stages


def fit_stages(
    stages: list[Stage],
    ctx: StageContext,
    trainer: Trainer,
    out: Path,
    run_config: dict[str, Any],
) -> list[dict[str, Any]]:
    """Train every stage in turn, checkpointing to ``out/stages``; a stage whose checkpoint
    says it finished is loaded instead, one that stopped mid-way is resumed.

    Returns one result per stage (name, epochs, steps, stop reason, this invocation's
    training seconds); a stage checkpointed by an earlier invocation also gives
    ``seconds_before_resume``, its training time in those (None when its checkpoint
    predates stored stage times).
    """
    results = []
    for index, stage in enumerate(stages):
        path = stage_path(out, index, stage)
        checkpoint = load_checkpoint(path) if path.exists() else None
        if checkpoint is not None:
            check_same_config(checkpoint, run_config["config"], path)
        if checkpoint is not None and stage_finished(checkpoint, stage):
            load_state_strict(
                stage.method.to(ctx.device), checkpoint["method"], f"stage {stage.name!r}"
            )
            trainer.logger.echo(f"stage {stage.name!r} already finished; loaded {path}")
            results.append(finished_stage_result(checkpoint, stage))
            continue
        ctx.step = 0
        results.append(
            trainer.fit(
                stage, ctx, path, stage_index=index, resume=checkpoint, run_config=run_config
            )
        )
    return results


def _load(record: dict[str, Any], setting: str, split: str, image_size: int | None) -> ImageDataset:
    """The run's dataset for ``split``, which its ``setting`` (``split`` or ``eval_split``)
    asks for."""
    splits = DATASETS.get(record["dataset"]).splits
    if split == "train+test" and split not in splits:
        split = "train"  # the recipe merges splits; this dataset has only one (e.g. a folder)
    if split not in splits:
        raise UserError(
            f"dataset {record['dataset']!r} has no split {split!r}, which the "
            f"{record['recipe']} recipe's {setting} asks for; --set {setting}=... one of "
            f"{', '.join(splits)}"
        )
    return build_dataset(
        record["dataset"],
        root=record["data_root"],
        split=split,
        image_size=image_size,
        download=record.get("download", False),
        **record.get("dataset_options", {}),
    )


def check_same_config(checkpoint: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """A UserError when the settings rebuilt for a resumed run (recipe defaults, preset,
    the run's overrides) differ from those its checkpoint trained with: a preset that changed
    between versions of cluster-ssl would otherwise change the run half-way."""
    before = checkpoint.get("run", {}).get("config")
    if before is None:  # checkpoints of versions that did not record the settings
        return
    changed = [
        f"{key} {before.get(key)!r} -> {value!r}"
        for key, value in config.items()
        if before.get(key) != value and key in before
    ]
    if changed:
        raise UserError(
            f"{path} trained with other settings than this version of cluster-ssl builds "
            f"for its run ({'; '.join(changed)}); resume it with the version that started "
            f"it, or start a new --out"
        )


def stage_path(out: Path, index: int, stage: Stage) -> Path:
    return out / "stages" / f"{index + 1:02d}-{stage.name}.pt"


def stage_finished(checkpoint: dict[str, Any], stage: Stage) -> bool:
    return checkpoint["stop_reason"] is not None or checkpoint["epoch"] >= stage.epochs


def finished_stage_result(checkpoint: dict[str, Any], stage: Stage) -> dict[str, Any]:
    """The result of a stage that finished in an earlier invocation, from its checkpoint."""
    return {
        "stage": stage.name,
        "epochs": checkpoint["epoch"],
        "steps": checkpoint["step"],
        "stop_reason": checkpoint["stop_reason"] or f"finished {checkpoint['epoch']} epochs",
        "seconds": 0.0,
        "seconds_before_resume": checkpoint.get("seconds"),
    }


def with_earlier_seconds(seconds: float, stage_results: list[dict[str, Any]]) -> float | None:
    """This invocation's ``seconds`` plus the stages' training time in earlier invocations
    of a resumed run (None when a checkpoint did not record it)."""
    earlier = [r["seconds_before_resume"] for r in stage_results if "seconds_before_resume" in r]
    return None if None in earlier else round(seconds + sum(earlier), 2)


def train(request: RunRequest) -> dict[str, Any]:
    """Run (or resume) a recipe end to end; returns the summary that was written."""
    started = time.perf_counter()
    out = Path(request.out)
    device = resolve_device(request.device)
    record = _claim_out_dir(out, request, device)
    dist = init_distributed(device)
    precision = resolve_precision(record["precision"], device)
    seed_everything(record["seed"])  # model initialisation happens in prepare()
    prepared = prepare(record)
    for stage in prepared.stages:  # every stage's batch splits, before any trains
        micro_batch(stage, dist.world_size, record.get("accumulate", 1))
    initialised = None  # before anything is written: a bad --init-from leaves no trace
    if record.get("init_from") and not stage_path(out, 0, prepared.stages[0]).exists():
        initialised = init_network_from(prepared.stages[0].method, Path(record["init_from"]))
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
        channels_last=request.channels_last,
        compile_backend=request.compile_backend,
        checkpoint_every=request.checkpoint_every,
    )
    trainer = Trainer(settings, logger)
    heldout = None if prepared.eval_dataset is prepared.dataset else prepared.eval_dataset
    ctx = StageContext(
        prepared.dataset,
        device,
        record["seed"],
        dist,
        num_workers=request.num_workers,
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
        num_workers=request.num_workers,
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
) -> Prediction:
    """A stage's method's clustering of ``dataset`` (labels, confidence, embedding).

    ``training_data`` says whether ``dataset`` is the split the stage trained on (a method
    may then use state it holds per training sample, such as IDFD's memory bank).
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
    )
    with torch.no_grad():
        return method.predict(ctx)


def _claim_out_dir(out: Path, request: RunRequest, device: torch.device) -> dict[str, Any]:
    """The run record: new for a fresh run, the stored one for ``--resume`` (which may
    repeat its settings, or spell them otherwise: ``--precision fp32`` for a CPU run
    recorded as ``auto``)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory; choose another --out")
    run_file = out / "run.json"
    if request.resume:
        if not run_file.is_file():
            raise UserError(
                f"--resume: {out} holds no run (no run.json); start it without --resume"
            )
        stored = json.loads(run_file.read_text())
        asked = request.given()
        for key in ("recipe", "dataset"):
            if asked.get(key, stored[key]) != stored[key]:
                raise UserError(
                    f"--resume: {out} is a {stored['recipe']} run on {stored['dataset']}, "
                    f"not {asked.get('recipe', stored['recipe'])} on "
                    f"{asked.get('dataset', stored['dataset'])}; use another --out"
                )
        before = {**RECORD_DEFAULTS, "init_from": None, **stored}  # older runs lack keys

        def meaning(key: str, value: Any) -> Any:
            if key != "precision":
                return value
            try:
                return resolve_precision(value, device)
            except UserError:  # e.g. a CUDA fp16 run resumed on a CPU: compared as written
                return value

        changed = [
            key
            for key, value in asked.items()
            if key != "overrides" and meaning(key, value) != meaning(key, before[key])
        ]
        if "overrides" in asked:
            changed += changed_settings(stored["recipe"], before["overrides"], asked["overrides"])
        if changed:
            raise UserError(
                f"--resume continues {out} with the settings it started with; it cannot "
                f"change {', '.join(changed)} (drop those options, or start a new --out)"
            )
        if request.data_root is not None:  # the dataset moved: read it from its new place
            stored["data_root"] = request.data_root
        return stored
    if (out / "summary.json").exists() or any(out.glob("stages/*.pt")):
        raise UserError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    (out / "metrics.jsonl").unlink(missing_ok=True)  # left by a run that never checkpointed
    return request.record()


def changed_settings(recipe: str, before: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """The keys a resuming command sets to another value than the run has, with both
    values, compared as the recipe parses them (``.25`` is ``0.25``)."""
    hints = get_recipe(recipe).config.setting_types({**before, **asked})

    def parsed(key: str, value: Any) -> Any:
        if isinstance(value, list):  # a tuple setting as run.json stores it
            return tuple(value)
        if isinstance(value, str) and key in hints:
            try:
                return parse_value(value, hints[key], key)
            except UserError:
                return value
        return value

    return [
        f"{key} (was {before.get(key, 'the preset value')}, now {value})"
        for key, value in asked.items()
        if parsed(key, before.get(key)) != parsed(key, value)
    ]


#: a run directory's record of the k chosen after training, which its predictions use
K_SELECTION_FILE = "k_selection.json"


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


@dataclass
class TrainedStage:
    """A stage checkpoint loaded back into its run's method, with the run's data."""

    path: Path
    checkpoint: dict[str, Any]
    record: dict[str, Any]
    prepared: Prepared
    stage: Stage

    def predict(self, device: torch.device, num_workers: int = 2) -> Prediction:
        """The method's clustering of the run's evaluation split."""
        return predict_method(
            self.stage,
            self.prepared.eval_dataset,
            device,
            DistInfo(),
            self.record["seed"],
            training_data=self.prepared.eval_dataset is self.prepared.dataset,
            num_workers=num_workers,
        )


def load_trained_stage(
    path: Path,
    data_root: str | None = None,
    split: str | None = None,
    with_data: bool = True,
    download: bool = False,
) -> TrainedStage:
    """Load a stage checkpoint (or a run directory's last stage) into its run's method;
    ``split`` replaces the run's evaluation split; ``download`` fetches missing data (as
    ``train --download``); ``with_data=False`` reads no images when the checkpoint
    describes its training data (:func:`prepare`)."""
    path = Path(path)
    if path.is_dir():
        summary_file = path / "summary.json"
        candidates = sorted((path / "stages").glob("*.pt"))
        if summary_file.is_file():  # its path may be relative to where training ran
            path = path / "stages" / Path(json.loads(summary_file.read_text())["checkpoint"]).name
        elif candidates:
            path = candidates[-1]
        else:
            raise UserError(f"{path} holds no checkpoint (no stages/*.pt)")
    checkpoint = load_checkpoint(path)
    if "run" not in checkpoint or "stage_index" not in checkpoint:
        raise UserError(f"{path} is not a cluster-ssl stage checkpoint")
    record = dict(checkpoint["run"])
    if data_root is not None:
        record["data_root"] = data_root
    if download:
        record["download"] = True
    if split is not None:
        splits = DATASETS.get(record["dataset"]).splits
        if split not in splits and split != "train+test":  # which a folder reads as train
            raise UserError(
                f"--split {split}: dataset {record['dataset']!r} has no such split; "
                f"choose one of {', '.join(splits)}"
            )
        record["overrides"] = {**record["overrides"], "eval_split": split}
    prepared = prepare(record, with_data)
    stage = prepared.stages[checkpoint["stage_index"]]
    load_state_strict(stage.method, checkpoint["method"], f"stage {stage.name!r}")
    chosen = path.parent.parent / K_SELECTION_FILE
    if chosen.is_file():  # k was chosen after training (``cluster --k auto``)
        stage.method.num_clusters = prepared.num_clusters = json.loads(chosen.read_text())["k"]
    return TrainedStage(path, checkpoint, record, prepared, stage)


def evaluate_checkpoint(
    path: Path,
    device_spec: str = "auto",
    data_root: str | None = None,
    num_workers: int = 2,
    split: str | None = None,
    report: Path | None = None,
    download: bool = False,
) -> dict[str, Any]:
    """Score the method stored in a stage checkpoint (or a run directory's last stage) on
    the run's evaluation split, or on ``split``; ``report`` also writes a report directory
    there (CSV, cluster grids, embedding map, and the clusters matched to classes);
    ``download`` fetches the data first if it is missing."""
    trained = load_trained_stage(path, data_root, split, download=download)
    prediction = trained.predict(resolve_device(device_spec), num_workers)
    prepared = trained.prepared
    metrics = evaluate_clustering(
        prepared.eval_dataset.labels, prediction.labels, prediction.num_clusters
    )
    result = {
        "checkpoint": str(trained.path),
        "stage": trained.stage.name,
        "epoch": trained.checkpoint["epoch"],
        "step": trained.checkpoint["step"],
        "recipe": trained.record["recipe"],
        "dataset": trained.record["dataset"],
        "split": prepared.config.eval_split or prepared.config.split,
        "num_images": len(prepared.eval_dataset),
        "num_clusters": prepared.num_clusters,
        **metrics,
    }
    if report is not None:
        from cluster_ssl.report.run_report import sample_names, write_report_dir

        scores = {k: f"{metrics[k]:.4f}" for k in ("acc", "nmi", "ari") if k in metrics}
        write_report_dir(
            Path(report),
            prepared.eval_dataset,
            prediction,
            title=f"{result['recipe']} on {result['dataset']} ({result['split']} split)",
            facts={
                "checkpoint": f"{trained.path} (stage {trained.stage.name!r}, epoch "
                f"{result['epoch']})",
                "images": str(result["num_images"]),
                **{name.upper(): value for name, value in scores.items()},
            },
            names=sample_names(prepared.eval_dataset),
        )
    return result

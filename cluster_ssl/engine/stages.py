"""The resumable stage loop: train each stage of a pipeline in turn, checkpointing to
``OUT/stages/NN-NAME.pt``; a finished stage is loaded, a stopped one resumed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cluster_ssl.config import flat_settings
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.engine.checkpoint import load_stage_checkpoint
from cluster_ssl.engine.recipe import Recipe
from cluster_ssl.engine.trainer import Stage, Trainer
from cluster_ssl.methods.base import StageContext
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.memory import is_out_of_memory
from cluster_ssl.runtime.state import load_state_strict


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
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        raise UserError(
            f"the networks of {recipe.name} with these settings need more memory than this "
            f"machine has; lower the sizes you set (hidden_dims, embedding_dim, width, "
            f"feature_dim, image_size...)"
        ) from None
    for stage in stages:
        stage.method.configure_scheduler(stage.method.configure_optimizer(), 1, 1)
    return stages


def fit_stages(
    stages: list[Stage],
    ctx: StageContext,
    trainer: Trainer,
    out: Path,
    run_config: dict[str, Any],
) -> list[dict[str, Any]]:
    """Train every stage in turn, checkpointing to ``out/stages``; a stage whose checkpoint
    says it finished is loaded instead, one that stopped mid-way is resumed (the events an
    earlier invocation logged after that checkpoint leave metrics.jsonl: they are replayed).

    Returns one result per stage (name, epochs, steps, stop reason, this invocation's
    training seconds); a stage checkpointed by an earlier invocation also gives
    ``seconds_before_resume``, its training time in those (None when its checkpoint
    predates stored stage times).
    """
    results = []
    for index, stage in enumerate(stages):
        path = stage_path(out, index, stage)
        checkpoint = load_stage_checkpoint(path) if path.exists() else None
        if checkpoint is not None:
            check_same_config(checkpoint, run_config["config"], path)
        if checkpoint is not None and stage_finished(checkpoint, stage):
            load_state_strict(
                stage.method.to(ctx.device), checkpoint["method"], f"stage {stage.name!r}"
            )
            trainer.logger.echo(f"stage {stage.name!r} already finished; loaded {path}")
            results.append(finished_stage_result(checkpoint, stage))
            continue
        replayed_after = checkpoint["step"] if checkpoint is not None else 0
        later = {other.name for other in stages[index + 1 :]} | {"final"}
        trainer.logger.forget(
            lambda event, stage=stage, after=replayed_after, later=later: (
                event.get("stage") in later
                or (event.get("stage") == stage.name and event.get("step", 0) > after)
            )
        )
        ctx.step = 0
        results.append(
            trainer.fit(
                stage, ctx, path, stage_index=index, resume=checkpoint, run_config=run_config
            )
        )
    return results


def check_same_config(checkpoint: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """A UserError when the settings rebuilt for a resumed run (recipe defaults, preset,
    the run's overrides) differ from those its checkpoint trained with: a preset that changed
    between versions of cluster-ssl would otherwise change the run half-way."""
    before = checkpoint.get("run", {}).get("config")
    if before is None:  # checkpoints of versions that did not record the settings
        return
    before, config = flat_settings(before), flat_settings(config)
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

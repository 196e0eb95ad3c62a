"""A run rebuilt from its record: recipe, settings, data and stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster_ssl.commands.record import TRAINING_DATA, get_recipe
from cluster_ssl.config import (
    build_config,
    overrides_in_current_names,
    setting_keys,
)
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.data.description import DataDescription
from cluster_ssl.data.registry import DATASETS, build_dataset
from cluster_ssl.engine.recipe import Recipe
from cluster_ssl.engine.stages import (
    build_stages,
)
from cluster_ssl.engine.trainer import Stage
from cluster_ssl.runtime.errors import UserError


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
    overrides = overrides_in_current_names(recipe.config, record["overrides"])  # older runs
    config = build_config(recipe.config, recipe.preset(record["dataset"]), overrides)
    eval_split = config.eval_split or config.split
    if not with_data and TRAINING_DATA in record:
        dataset = eval_dataset = DataDescription.from_record(record[TRAINING_DATA])
    else:
        dataset = load_split(record, "split", config.split, config.image_size)
        eval_dataset = (
            dataset
            if eval_split == config.split
            else load_split(record, "eval_split", eval_split, config.image_size)
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
    for stage in stages:
        if stage.batch_size > len(dataset):  # it would train one step an epoch on all of it
            keys = [key for key in setting_keys(recipe.config) if key.endswith("batch_size")]
            raise UserError(
                f"stage {stage.name!r} takes batches of {stage.batch_size} images, more than "
                f"the {len(dataset)} training images of {record['dataset']!r} "
                f"({config.split}); lower it (--set {' / '.join(keys)})"
            )
    return Prepared(recipe, config, dataset, eval_dataset, num_clusters, stages)


def load_split(
    record: dict[str, Any], setting: str, split: str, image_size: int | None
) -> ImageDataset:
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

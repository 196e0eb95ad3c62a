"""``cluster-ssl config RECIPE --dataset NAME [--set ...]``: the settings a run would train
with, without training: what ``train`` writes to ``OUT/config.json``, so a long GPU run can be
checked before it is launched."""

from __future__ import annotations

from typing import Any

from cluster_ssl.config import DEFAULT_DATASET, as_dict, build_config
from recipes import RECIPES


def resolved_settings(
    recipe: str, dataset: str | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every setting of ``recipe`` on ``dataset``: defaults, the dataset's preset, then
    ``overrides`` (``--set``), grouped by stage as config.json holds them.

    Args:
        recipe: a recipe name (``cluster-ssl list``).
        dataset: the dataset whose preset applies (the default dataset when None).
        overrides: ``--set`` keys and values, as text or values.

    Returns:
        The settings; ``num_clusters`` None means the dataset's number of classes.

    Raises:
        UserError: an unknown recipe, setting or value out of its range.
    """
    spec = RECIPES.get(recipe)
    preset = spec.preset(dataset or DEFAULT_DATASET)
    return as_dict(build_config(spec.config, preset, overrides or {}))

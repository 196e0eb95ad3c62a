"""The pretext a clustering recipe builds on, chosen by configuration (``--set pretext=``).

SCAN's clustering step and DEC's clustering layer (``simclr_dec``) need a trained backbone
and an embedding of it, not SimCLR as such: ``pretext=idfd`` or ``pretext=pcl`` builds that
recipe's method (its own preset for the dataset: loss, augmentation, optimiser) on the
clustering recipe's backbone settings, as the first stage. No method class is added per
combination: the pretext is any :class:`~cluster_ssl.methods.contrastive.EmbeddingMethod`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from cluster_ssl.config import build_config
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.engine.recipe import Recipe
from cluster_ssl.methods.base import Batch
from cluster_ssl.methods.contrastive import EmbeddingMethod
from cluster_ssl.methods.simclr import SimCLR
from cluster_ssl.runtime.errors import UserError
from recipes import simclr

#: what the pretext takes from the clustering recipe's settings: the network and the images
SHARED = ("backbone", "width", "stem", "pretrained", "image_size", "flip")


@dataclass
class PretextConfig(simclr.SimCLRConfig):
    """SimCLR's settings (``epochs`` is the pretext's length), or another recipe's method as
    the pretext: ``pretext`` names one whose recipe declares ``pretext=True``, and
    ``--set pretext.KEY=VALUE`` gives that recipe's settings, kept in ``pretext_settings``
    over its preset and checked by its own config (the network and image settings,
    ``SHARED``, come from this recipe's)."""

    pretext: str = "simclr"
    pretext_settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        recipe = pretext_recipe(self.pretext)
        if recipe is None and self.pretext_settings:
            keys = ", ".join(f"pretext.{key}" for key in self.pretext_settings)
            raise UserError(
                f"--set {keys}: SimCLR is this recipe's own pretext, its settings are the "
                f"top-level keys (--set lr=...); pretext.KEY is for --set pretext=idfd|pcl"
            )
        shared = [key for key in self.pretext_settings if key in SHARED]
        if shared:
            raise UserError(
                f"--set pretext.{shared[0]}: the pretext trains this run's network; "
                f"set {shared[0]} without the prefix"
            )
        if recipe is not None:  # the pretext's own config checks its keys and values now
            build_config(recipe.config, {}, self.pretext_settings)

    @classmethod
    def free_group(cls, name: str) -> str | None:
        return "pretext_settings" if name == "pretext" else None

    @classmethod
    def unknown_hint(cls, key: str, values: dict[str, Any]) -> str:
        name = str(values.get("pretext", "simclr"))
        recipe = pretext_recipe(name)
        if recipe is None or recipe.config.setting_type(key, {}) is None:
            return ""
        return f"it is a setting of the pretext {name}: write --set pretext.{key}=... "

    @classmethod
    def setting_type(cls, key: str, values: dict[str, Any]) -> Any:
        name, _, rest = key.partition(".")
        if name != "pretext" or not rest:
            return super().setting_type(key, values)
        recipe = pretext_recipe(str(values.get("pretext", "simclr")))
        return None if recipe is None else recipe.config.setting_type(rest, {})


def pretext_recipe(name: str) -> Recipe | None:
    """The recipe of the pretext ``name``, None for SimCLR (the clustering recipe's own)."""
    from recipes import RECIPES  # the registry lists this package's modules when complete

    pretexts = [recipe.name for recipe in RECIPES.values() if recipe.pretext]
    pretexts.sort(key=lambda each: each != "simclr")  # the default first
    if name not in pretexts:
        raise UserError(f"--set pretext={name}: use one of {', '.join(pretexts)}")
    return None if name == "simclr" else RECIPES.get(name)


def build_pretext(
    name: str, cfg: PretextConfig, dataset: ImageDataset, num_clusters: int
) -> EmbeddingMethod:
    """The pretext method ``name``: SimCLR from ``cfg`` itself, another recipe's method from
    its preset for ``dataset``, ``cfg.pretext_settings`` and the network and image settings
    of ``cfg``."""
    recipe = pretext_recipe(name)
    if recipe is None:
        return simclr.simclr_method(cfg, dataset, num_clusters)
    shared = {key: getattr(cfg, key) for key in SHARED}
    config = build_config(
        recipe.config, recipe.preset(dataset.name), {**cfg.pretext_settings, **shared}
    )
    return recipe.build(config, dataset, num_clusters)[0].method


def embedding_for_mining(pretext: EmbeddingMethod) -> Callable[[Batch], torch.Tensor]:
    """The features SCAN mines neighbours on: SimCLR's projection head (as SCAN does), the
    space each other pretext clusters in otherwise."""
    if isinstance(pretext, SimCLR):
        return pretext.projection
    return pretext.clustered_features

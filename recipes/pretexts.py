"""The pretext a clustering recipe builds on, chosen by configuration (``--set pretext=``).

SCAN's clustering step and DEC's clustering layer (``simclr_dec``) need a trained backbone
and an embedding of it, not SimCLR as such: ``pretext=idfd`` or ``pretext=pcl`` builds that
recipe's method (its own preset for the dataset: loss, augmentation, optimiser) on the
clustering recipe's backbone settings, as the first stage. No method class is added per
combination: the pretext is any :class:`~cluster_ssl.methods.contrastive.EmbeddingMethod`.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from cluster_ssl.config import RecipeConfig, build_config, field_names
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.errors import UserError
from cluster_ssl.methods.base import Batch
from cluster_ssl.methods.contrastive import EmbeddingMethod
from cluster_ssl.methods.simclr import SimCLR
from cluster_ssl.recipe import Recipe
from recipes import idfd, pcl, simclr

#: recipes whose first stage can be a pretext, besides SimCLR (the clustering recipe's own)
OTHER_PRETEXTS = {"idfd": idfd.RECIPE, "pcl": pcl.RECIPE}
PRETEXTS = ("simclr", *OTHER_PRETEXTS)
#: what the pretext takes from the clustering recipe's settings: the network and the images
SHARED = ("backbone", "width", "cifar_stem", "pretrained", "image_size", "flip")


@dataclass
class PretextConfig(simclr.SimCLRConfig):
    """SimCLR's settings (``epochs`` is the pretext's length), or another recipe's method as
    the pretext: ``pretext`` names it, and ``--set`` gives that recipe's settings
    (:meth:`pretext_keys`), kept in ``pretext_settings`` over its preset."""

    pretext: str = "simclr"
    pretext_settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def pretext_keys(cls, values: dict[str, Any]) -> frozenset[str]:
        """With ``pretext=idfd|pcl``, that recipe's settings but the network and image
        settings it takes from the run (``SHARED``) and every recipe's (``epochs`` is the
        pretext stage's length, ``batch_size`` its batch...). A setting the run has as well
        goes to both: ``kmeans_restarts`` to the pretext's and the run's own k-means, ``lr``
        to the pretext (and to SimCLR's settings, unused)."""
        recipe = _pretext_recipe(values)
        if recipe is None:
            return frozenset()
        own = set(field_names(RecipeConfig)) | set(SHARED)
        return frozenset(field_names(recipe.config)) - own

    @classmethod
    def setting_types(cls, values: dict[str, Any]) -> dict[str, Any]:
        recipe = _pretext_recipe(values)
        own = typing.get_type_hints(cls)
        return own if recipe is None else {**typing.get_type_hints(recipe.config), **own}


def _pretext_recipe(values: dict[str, Any]) -> Recipe | None:
    """The recipe of the pretext ``values`` choose, None for SimCLR (the run's own)."""
    return OTHER_PRETEXTS.get(str(values.get("pretext", "simclr")))


def build_pretext(
    name: str, cfg: PretextConfig, dataset: ImageDataset, num_clusters: int
) -> EmbeddingMethod:
    """The pretext method ``name``: SimCLR from ``cfg`` itself, another recipe's method from
    its preset for ``dataset``, ``cfg.pretext_settings`` and the network and image settings
    of ``cfg``."""
    if name == "simclr":
        return simclr.simclr_method(cfg, dataset, num_clusters)
    if name not in OTHER_PRETEXTS:
        raise UserError(f"--set pretext={name}: use one of {', '.join(PRETEXTS)}")
    recipe = OTHER_PRETEXTS[name]
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

"""Recipe configurations: dataclasses, per-dataset presets and ``--set key=value`` overrides."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from cluster_ssl.errors import UserError

C = TypeVar("C", bound="RecipeConfig")

#: what ``cluster-ssl train`` runs when no recipe or dataset is named
DEFAULT_RECIPE = "dec"
DEFAULT_DATASET = "digits"


@dataclass
class RecipeConfig:
    """Settings every recipe has; each recipe subclasses this with its paper's hyperparameters.

    ``epochs`` is the length of the recipe's main training stage (each recipe documents
    which one); ``num_clusters`` defaults to the dataset's number of classes.
    """

    num_clusters: int | None = None
    split: str = "train+test"
    eval_split: str | None = None
    image_size: int | None = None
    epochs: int = 100
    batch_size: int = 256
    eval_every: int = 0

    @classmethod
    def pretext_keys(cls, values: dict[str, Any]) -> frozenset[str]:
        """Settings of another recipe that this one trains first as its pretext, which
        ``--set`` gives to it: :func:`build_config` collects them in the config's
        ``pretext_settings`` (and sets those this recipe has as well). ``values`` are the
        settings chosen so far. None here."""
        return frozenset()

    @classmethod
    def setting_types(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The declared type of every setting ``--set`` may give with ``values`` chosen:
        this recipe's, and its pretext's (:meth:`pretext_keys`)."""
        return typing.get_type_hints(cls)


def field_names(cls: type[RecipeConfig]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["lr=0.1", "tol=1e-3"]`` -> ``{"lr": "0.1", "tol": "1e-3"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {item!r}; for example --set lr=0.01")
        out[key.strip()] = value.strip()
    return out


def build_config(cls: type[C], preset: dict[str, Any], overrides: dict[str, Any]) -> C:
    """Defaults, then the dataset preset, then the user's overrides (strings are parsed,
    lists, as JSON stores tuples, become tuples again)."""
    hints = typing.get_type_hints(cls)
    valid = field_names(cls)
    values: dict[str, Any] = dict(preset)
    for_pretext = cls.pretext_keys({**preset, **overrides})
    for key, raw in overrides.items():
        if isinstance(raw, list):  # a tuple setting read back from run.json
            raw = tuple(raw)
        if key in for_pretext:  # parsed by the pretext recipe's own config
            values["pretext_settings"] = {**values.get("pretext_settings", {}), key: raw}
            if key not in valid:
                continue
        elif key not in valid:
            raise UserError(
                f"unknown setting {key!r} for this recipe; valid keys: {', '.join(valid)}"
            )
        if isinstance(raw, str):
            raw = parse_value(raw, hints[key], key)
        values[key] = raw
    config = cls(**values)
    check_ranges(config)
    return config


#: settings that must be > 0, and settings that must be >= 0, wherever a recipe has them
POSITIVE = (
    "num_clusters",
    "epochs",
    "batch_size",
    "update_interval",
    "maxiter",
    "kmeans_restarts",
    "lr",
    "pretrain_lr",
    "alpha",
    "temperature",
    "instance_temperature",
    "cluster_temperature",
    "decorrelation_temperature",
    "image_size",
    "width",
    "strength",
    "embedding_dim",
    "feature_dim",
    "num_neighbours",
    "num_heads",
    "scan_epochs",
    "scan_batch_size",
    "scan_lr",
    "selflabel_epochs",
    "selflabel_batch_size",
    "selflabel_lr",
)
NON_NEGATIVE = (
    "tol",
    "momentum",
    "pretrain_momentum",
    "weight_decay",
    "gamma",
    "eval_every",
    "entropy_weight",
    "decorrelation_weight",
    "warmup",
    "pretrain_dropout",
    "scan_weight_decay",
    "selflabel_weight_decay",
)


#: settings in [0, 1) (a probability of dropping, a momentum that must forget) and in [0, 1]
BELOW_ONE = (
    "pretrain_dropout",
    "bank_momentum",
    "encoder_momentum",
    "momentum",
    "pretrain_momentum",
    "dec_momentum",
)
UP_TO_ONE = ("final_lr_fraction", "crop_scale")


def check_ranges(config: RecipeConfig) -> None:
    """One clear error for a value outside its range, before anything is built or trained."""
    for name in POSITIVE + NON_NEGATIVE + BELOW_ONE + UP_TO_ONE:
        value = getattr(config, name, None)
        if value is None or isinstance(value, bool):
            continue
        if name in POSITIVE and value <= 0:
            raise UserError(f"--set {name}={value}: must be greater than 0")
        if name in NON_NEGATIVE + BELOW_ONE + UP_TO_ONE and value < 0:
            raise UserError(f"--set {name}={value}: must not be negative")
        if name in BELOW_ONE and value >= 1:
            raise UserError(f"--set {name}={value}: must be below 1")
        if name in UP_TO_ONE and value > 1:
            raise UserError(f"--set {name}={value}: must be at most 1")
    milestones = getattr(config, "milestones", ())
    if list(milestones) != sorted(milestones) or any(not 0 < m < 1 for m in milestones):
        joined = ",".join(map(str, milestones))
        raise UserError(
            f"--set milestones={joined}: give increasing fractions of training between 0 "
            f"and 1, e.g. 0.5,0.75"
        )


def parse_value(text: str, annotation: Any, key: str) -> Any:
    """Convert a ``--set`` string to the field's declared type."""
    options = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in options:
            return None
        inner = [option for option in options if option is not type(None)]
        return parse_value(text, inner[0], key)
    try:
        return _convert(text, annotation)
    except ValueError:
        raise UserError(f"--set {key}={text!r}: expected {_describe(annotation)}") from None


def _describe(annotation: Any) -> str:
    """What a ``--set`` value of this type looks like, for error messages."""
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        return "comma-separated " + {int: "whole numbers", float: "numbers"}.get(item, "values")
    return {float: "a finite number", int: "a whole number", bool: "true or false"}.get(
        annotation, "a string"
    )


def _convert(text: str, annotation: Any) -> Any:
    if annotation is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(text)
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        return tuple(_convert(part, item) for part in text.split(",") if part)
    value = annotation(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(text)  # nan and inf parse as floats but are no setting
    return value


def as_dict(cfg: RecipeConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)

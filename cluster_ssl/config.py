"""Recipe configurations: dataclasses, per-dataset presets and ``--set key=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from cluster_ssl.runtime.errors import UserError

C = TypeVar("C", bound="Settings")

#: what ``cluster-ssl train`` runs when no recipe or dataset is named
DEFAULT_RECIPE = "dec"
DEFAULT_DATASET = "digits"


def setting(
    default: Any = dataclasses.MISSING,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with its allowed range: ``low``/``high`` bounds, inclusive unless
    ``low_open``/``high_open``. :func:`check_ranges` enforces it before anything is built."""
    bounds = {"low": low, "high": high, "low_open": low_open, "high_open": high_open}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata={"range": bounds})
    return field(default=default, metadata={"range": bounds})


def positive(default: Any) -> Any:
    """A setting that must be greater than 0 (None allowed where the type allows it)."""
    return setting(default, low=0, low_open=True)


def non_negative(default: Any) -> Any:
    """A setting that must be 0 or more."""
    return setting(default, low=0)


def fraction(default: Any) -> Any:
    """A setting in [0, 1] (a share, a final lr fraction, a crop area)."""
    return setting(default, low=0, high=1)


def below_one(default: Any) -> Any:
    """A setting in [0, 1): a probability of dropping, a momentum that must forget."""
    return setting(default, low=0, high=1, high_open=True)


def group(cls: type[Settings]) -> Any:
    """A field holding one stage's settings, set as ``--set NAME.KEY=VALUE``."""
    return field(default_factory=cls, metadata={"group": True})


@dataclass
class Settings:
    """A group of settings: dataclass fields declared with their types and ranges.

    ``renamed`` maps keys of earlier versions to their names now (``scan_lr`` ->
    ``scan.lr``), so ``--set`` of an old key names the new one and runs written before a
    rename still resume. ``replaced`` does the same for a setting whose values changed form
    too: it maps the old key to a function from an old value to the new key and value
    (``cifar_stem=true`` -> ``stem="cifar"``).
    """

    renamed: ClassVar[dict[str, str]] = {}
    replaced: ClassVar[dict[str, Callable[[Any], tuple[str, Any]]]] = {}

    def __post_init__(self) -> None:
        check_ranges(self)

    @classmethod
    def free_group(cls, name: str) -> str | None:
        """The dict field that keeps ``NAME.KEY`` settings another settings class checks
        (a pretext's, :class:`recipes.pretexts.PretextConfig`); None here."""
        return None

    @classmethod
    def unknown_hint(cls, key: str, values: dict[str, Any]) -> str:
        """What to write instead of ``key``, which this recipe lacks ("" when nothing)."""
        return ""

    @classmethod
    def setting_type(cls, key: str, values: dict[str, Any]) -> Any:
        """The declared type of the (dotted) ``key`` with ``values`` chosen; None if the
        recipe has no such setting."""
        name, _, rest = key.partition(".")
        hints = typing.get_type_hints(cls)
        if name not in hints or name in ("renamed", "replaced"):
            return None
        if rest:
            inner = _group_class(cls, name)
            return None if inner is None else inner.setting_type(rest, values.get(name, {}))
        return hints[name]


@dataclass
class RecipeConfig(Settings):
    """Settings every recipe has; each recipe subclasses this with its paper's hyperparameters.

    ``epochs`` is the length of the recipe's first stage (each recipe documents the later
    stages' groups); ``num_clusters`` defaults to the dataset's number of classes.
    """

    num_clusters: int | None = positive(None)
    split: str = "train+test"
    eval_split: str | None = None
    image_size: int | None = positive(None)
    epochs: int = positive(100)
    batch_size: int = positive(256)
    eval_every: int = non_negative(0)


def _group_class(cls: type, name: str) -> type[Settings] | None:
    """The settings class of ``cls``'s group field ``name``, None when it is no group."""
    for item in dataclasses.fields(cls):
        if item.name == name and item.metadata.get("group"):
            return typing.get_type_hints(cls)[name]
    return None


def field_names(cls: type[Settings]) -> list[str]:
    return [item.name for item in dataclasses.fields(cls)]


def setting_keys(cls: type[Settings], prefix: str = "") -> list[str]:
    """Every key ``--set`` takes for ``cls``, dotted for the groups (``scan.lr``)."""
    keys = []
    for name in field_names(cls):
        inner = _group_class(cls, name)
        keys += setting_keys(inner, f"{prefix}{name}.") if inner else [prefix + name]
    return keys


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["lr=0.1", "tol=1e-3"]`` -> ``{"lr": "0.1", "tol": "1e-3"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {item!r}; for example --set lr=0.01")
        out[key.strip()] = value.strip()
    return out


def current_key(cls: type[Settings], key: str) -> str:
    """``key`` under its name in this version (a renamed key of an older run's record)."""
    return cls.renamed.get(key, key)


def build_config(cls: type[C], preset: dict[str, Any], overrides: dict[str, Any]) -> C:
    """Defaults, then the dataset preset, then the user's overrides, all as (dotted) keys;
    strings are parsed to the field's type, lists (JSON's tuples) become tuples again.
    Every value is range-checked as the config is built."""
    values: dict[str, Any] = {}
    for key, raw in preset.items():
        _assign(cls, values, key, raw)
    for key, raw in overrides.items():
        if key not in setting_keys(cls) and (key in cls.renamed or key in cls.replaced):
            new = cls.renamed[key] if key in cls.renamed else cls.replaced[key](raw)[0]
            raise UserError(f"--set {key}: this setting is now {new}; write --set {new}=...")
        _assign(cls, values, key, raw)
    return _construct(cls, values)


def overrides_in_current_names(cls: type[Settings], overrides: dict[str, Any]) -> dict[str, Any]:
    """A stored run's overrides in this version's names: keys renamed since it was written
    under their new names, replaced settings as their replacements."""
    current = {}
    for key, value in overrides.items():
        if key in cls.replaced and key not in setting_keys(cls):
            key, value = cls.replaced[key](value)
        current[current_key(cls, key)] = value
    return current


def _assign(cls: type[Settings], values: dict[str, Any], key: str, raw: Any) -> None:
    name, _, rest = key.partition(".")
    held_in = cls.free_group(name) if rest else None
    if held_in is not None:  # checked by the settings class it belongs to
        values.setdefault(held_in, {})[rest] = tuple(raw) if isinstance(raw, list) else raw
        return
    kind = cls.setting_type(key, values)
    if kind is None:
        known = setting_keys(cls)
        near = difflib.get_close_matches(key, known, n=1)
        hint = cls.unknown_hint(key, values) or (f"did you mean {near[0]}? " if near else "")
        raise UserError(
            f"unknown setting {key!r} for this recipe; {hint}valid keys: {', '.join(known)}"
        )
    if isinstance(raw, list):  # a tuple setting read back from JSON
        raw = tuple(raw)
    raw = parse_value(raw, kind, key) if isinstance(raw, str) else check_value(raw, kind, key)
    if rest:
        values.setdefault(name, {})[rest] = raw
    else:
        values[name] = raw


def _construct(cls: type[C], values: dict[str, Any]) -> C:
    """``cls(**values)`` with its groups built from their (dotted) values first."""
    built = {}
    for name, value in values.items():
        inner = _group_class(cls, name)
        if inner is not None and not isinstance(value, Settings):
            flat = dict(value)
            nested: dict[str, Any] = {}
            for key, raw in flat.items():
                _assign(inner, nested, key, raw)
            try:
                value = _construct(inner, nested)
            except UserError as error:  # name the setting as --set takes it
                raise UserError(str(error).replace("--set ", f"--set {name}.", 1)) from None
        built[name] = value
    return cls(**built)


def check_ranges(settings: Settings) -> None:
    """One clear error for a value outside its declared range, before anything is built."""
    for item in dataclasses.fields(settings):
        bounds = declared_range(type(settings), item.name)
        value = getattr(settings, item.name)
        if bounds is None or value is None or isinstance(value, bool):
            continue
        for each in value if isinstance(value, tuple) else (value,):
            problem = _out_of_range(each, **bounds)
            if problem:
                raise UserError(f"--set {item.name}={_show(value)}: {problem}")


def declared_range(cls: type, name: str) -> dict[str, Any] | None:
    """The range of setting ``name``, from the class that declared it with one: a subclass
    that only changes the default (``epochs: int = 500``) keeps its base's range."""
    for klass in cls.__mro__:
        declared = klass.__dict__.get("__dataclass_fields__", {}).get(name)
        if declared is not None and "range" in declared.metadata:
            return declared.metadata["range"]
    return None


def _out_of_range(value: float, low, high, low_open: bool, high_open: bool) -> str | None:
    if low is not None and (value <= low if low_open else value < low):
        if not low_open:
            return "must not be negative" if low == 0 else f"must be at least {low:g}"
        return f"must be greater than {low:g}"
    if high is not None and (value >= high if high_open else value > high):
        return f"must be below {high:g}" if high_open else f"must be at most {high:g}"
    return None


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def check_milestones(milestones: tuple[float, ...]) -> None:
    """Milestones are increasing fractions of training, strictly between 0 and 1."""
    if list(milestones) != sorted(milestones) or any(not 0 < m < 1 for m in milestones):
        raise UserError(
            f"--set milestones={_show(milestones)}: give increasing fractions of training "
            f"between 0 and 1, e.g. 0.5,0.75"
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


def check_value(value: Any, annotation: Any, key: str) -> Any:
    """A setting given as a Python value (an estimator's ``options``, a preset) checked
    against the field's declared type as ``--set`` checks text: an int where a whole
    number is declared, a finite number where a float is; ints are taken as floats."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        inner = [option for option in options if option is not type(None)]
        return check_value(value, inner[0], key)
    if typing.get_origin(annotation) is tuple and isinstance(value, tuple | list):
        item = typing.get_args(annotation)[0]
        return tuple(check_value(part, item, key) for part in value)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is float and number and math.isfinite(value):
        return float(value)
    if annotation is int and number and float(value).is_integer() and not isinstance(value, float):
        return value
    plain = annotation in (bool, str) or typing.get_origin(annotation) is dict or annotation is dict
    if plain and isinstance(value, typing.get_origin(annotation) or annotation):
        return value
    if annotation in (int, float, bool, str) or typing.get_origin(annotation) is tuple:
        raise UserError(f"--set {key}={value!r}: expected {_describe(annotation)}")
    return value


def _describe(annotation: Any) -> str:
    """What a ``--set`` value of this type looks like, for error messages."""
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        return "comma-separated " + {int: "whole numbers", float: "numbers"}.get(item, "values")
    return {float: "a finite number", int: "a whole number", bool: "true or false"}.get(
        annotation, "a string"
    )


def is_true(value: Any) -> bool:
    """A boolean setting as a run's record may hold it: a bool, or the text ``--set`` took."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


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


def flat_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings (config.json) as dotted keys: ``{"scan": {"lr": 1}}`` ->
    ``{"scan.lr": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def as_dict(cfg: RecipeConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)

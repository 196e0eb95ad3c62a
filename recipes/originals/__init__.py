"""What each paper's original ran: one module per recipe (``recipes/originals/<recipe>.py``)
holding, for every paper dataset of that recipe, the original's value of each setting that
matters for the paper's number, where that value comes from, and why our preset differs
where it does. ``tools/protocols.py`` prints them beside the resolved presets
(docs/PROTOCOLS.md); tests/recipes/test_protocols.py fails on a difference without a reason.

Plain data: nothing here imports a recipe (``recipes/__init__.py`` imports this package
while it collects the recipes), so a module reads as the table it is.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

#: the prefix of a reason that names a difference nobody has matched or justified yet
NOT_YET_MATCHED = "not yet matched: "


@dataclass(frozen=True)
class Original:
    """One setting as the original ran it.

    Attributes:
        setting: the setting's name as ``cluster-ssl config`` prints it, a stage's setting
            with a dot (``scan.lr``).
        value: the original's value in our setting's terms (None where our setting's None
            means "the dataset's own" or "the original's choice"; ``note`` then says which).
        source: where the value comes from: a paper section or table, or a repository file
            (``owner/name path``); ``unconfirmed: ...`` with what was checked when no source
            settles it.
        reason: why our preset differs; empty where it does not.
        note: how the original states the value, where its terms are not ours.
    """

    setting: str
    value: Any
    source: str
    reason: str = ""
    note: str = ""


@dataclass(frozen=True)
class Unmatched:
    """A behaviour of the original that no setting selects, so no value of ours to compare:
    what the original does, where it says so, and why ours does not."""

    what: str
    original: str
    source: str
    reason: str


@dataclass(frozen=True)
class Protocol:
    """One recipe on one paper dataset: the originals of its settings and the behaviours
    no setting reaches."""

    rows: tuple[Original, ...]
    unmatched: tuple[Unmatched, ...] = ()


def originals_of(recipe: str) -> Any:
    """The module of ``recipe``'s originals: ``PROTOCOLS`` (dataset -> :class:`Protocol`)
    and ``WITHOUT_ORIGINAL`` (dataset -> why that preset has no original to compare)."""
    return importlib.import_module(f"{__name__}.{recipe}")


def resolved_value(settings: dict[str, Any], name: str) -> Any:
    """The value of the dotted setting ``name`` in resolved ``settings`` (KeyError: no such
    setting)."""
    value: Any = settings
    for part in name.split("."):
        if not isinstance(value, dict):
            raise KeyError(name)
        value = value[part]
    return value


def same(ours: Any, original: Any) -> bool:
    """Whether two setting values are equal: lists and tuples alike, floats to 1e-9."""
    if isinstance(ours, list | tuple) and isinstance(original, list | tuple):
        return len(ours) == len(original) and all(map(same, ours, original))
    if isinstance(ours, bool) or isinstance(original, bool):
        return ours is original
    if isinstance(ours, int | float) and isinstance(original, int | float):
        return math.isclose(ours, original, rel_tol=1e-9, abs_tol=1e-12)
    return ours == original

"""``cluster-ssl list``: the recipes, datasets and folder methods a user can name."""

from __future__ import annotations

import textwrap

from cluster_ssl.commands.folder.sizing import folder_methods
from cluster_ssl.data.registry import list_datasets
from recipes import RECIPES


def listing(width: int = 100) -> str:
    """Every recipe with its description and presets, every dataset, and the recipes
    ``cluster --method`` takes; descriptions wrapped to ``width``, never cut."""
    lines = ["recipes (cluster-ssl train NAME; presets are the papers' per-dataset settings):"]
    for recipe in RECIPES.values():
        presets = ", ".join(sorted(recipe.presets)) or "none"
        lines += _entry(recipe.name, f"{recipe.description}. Presets: {presets}.", width)
    lines.append("datasets (--dataset NAME):")
    for spec in list_datasets():
        lines += _entry(spec.name, spec.description, width)
    lines.append(f"cluster --method: {', '.join(folder_methods())}")
    return "\n".join(lines)


def _entry(name: str, text: str, width: int) -> list[str]:
    """``  name  text`` with the text wrapped under itself."""
    wrapped = textwrap.wrap(text, width=max(40, width - 18)) or [""]
    return [f"  {name if index == 0 else '':14s} {line}" for index, line in enumerate(wrapped)]

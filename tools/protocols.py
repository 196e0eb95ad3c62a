"""The protocol card: every paper preset's resolved settings beside the original's values.

    python tools/protocols.py > docs/PROTOCOLS.md

For every recipe and every dataset with a table in ``recipes/originals/<recipe>.py``, one
table: each recorded setting, our value (the preset resolved by ``resolved_settings``, the
code ``cluster-ssl config`` and ``train`` run), the original's value, its source and, where
they differ, the reason. Then the behaviours no setting reaches, and the presets without an
original. tests/recipes/test_protocols.py checks that docs/PROTOCOLS.md is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from cluster_ssl.commands.config_card import resolved_settings
from recipes import RECIPES
from recipes.originals import (
    NOT_YET_MATCHED,
    Original,
    Protocol,
    originals_of,
    resolved_value,
    same,
)

HEADER = """# Protocol card: each paper preset against the original

Made by `python tools/protocols.py > docs/PROTOCOLS.md`, from the presets resolved as
`cluster-ssl config RECIPE --dataset NAME` prints them (`resolved_settings`, the code `train`
runs) and the original's values recorded beside each recipe in
`recipes/originals/<recipe>.py` (one `Original` row per setting: value, source, reason).
`tests/recipes/test_protocols.py` fails when this file is stale, when a preset's value
differs from its recorded original without a reason, when a reason is recorded for a value
that no longer differs, and when a row names a setting that does not exist.

A row **differs** when our resolved value is not the original's (lists and tuples alike,
floats to a relative 1e-9); such a row is marked **≠** and carries its reason. The
original's value is written in our setting's terms: `null` where our setting's None means
"the dataset's own" or "the original's choice", with how the original states it in
parentheses. A source beginning "unconfirmed" was not settled by the original's code or
paper (what was checked is said); a reason beginning "not yet matched" is a difference
nobody has matched or justified yet. "Behaviours no setting reaches" are what the original
does that no setting selects. Presets of our own (the CPU presets on digits and
Fashion-MNIST, SimCLR + DEC) have no original and are listed at the end of each recipe.
"""


def problems(recipe: str, dataset: str) -> list[str]:
    """What the card cannot stand behind for ``recipe`` on ``dataset``: a row naming no
    setting, a value that differs from the original with no reason, a reason left on a value
    that no longer differs."""
    settings = resolved_settings(recipe, dataset)
    found = []
    for row in originals_of(recipe).PROTOCOLS[dataset].rows:
        try:
            ours = resolved_value(settings, row.setting)
        except KeyError:
            found.append(f"{row.setting}: not a setting of {recipe}")
            continue
        if not same(ours, row.value) and not row.reason:
            found.append(f"{row.setting}: ours {ours!r}, original {row.value!r}, no reason")
        if same(ours, row.value) and row.reason:
            found.append(f"{row.setting}: a reason recorded but the values are the same")
    return found


def cell(text: str) -> str:
    """``text`` fit for one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def shown(value: Any) -> str:
    """A setting value as config.json writes it."""
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value)}`"


def setting_row(row: Original, settings: dict[str, Any]) -> str:
    ours = resolved_value(settings, row.setting)
    differs = not same(ours, row.value)
    original = shown(row.value) + (f" ({row.note})" if row.note else "")
    mark = "**≠**" if differs else ""
    reason = row.reason if differs else ""
    cells = (f"`{row.setting}`", shown(ours), mark, original, row.source, reason)
    return "| " + " | ".join(cell(text) for text in cells) + " |"


def protocol_table(recipe: str, dataset: str, protocol: Protocol) -> list[str]:
    settings = resolved_settings(recipe, dataset)
    rows = [setting_row(row, settings) for row in protocol.rows]
    differing = sum("**≠**" in row for row in rows)
    lines = [
        f"### {recipe} on {dataset}",
        "",
        f"`cluster-ssl config {recipe} --dataset {dataset}`: {len(rows)} settings recorded, "
        f"{differing} {'differs' if differing == 1 else 'differ'}.",
        "",
        "| setting | ours | | original | source | reason |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    if protocol.unmatched:
        lines += [
            "",
            "Behaviours no setting reaches:",
            "",
            "| behaviour | original | source | reason |",
            "|---|---|---|---|",
        ]
        for gap in protocol.unmatched:
            cells = (gap.what, gap.original, gap.source, gap.reason)
            lines.append("| " + " | ".join(cell(text) for text in cells) + " |")
    return [*lines, ""]


def recipe_section(recipe: str) -> list[str]:
    module = originals_of(recipe)
    presets = sorted(RECIPES.get(recipe).presets)
    lines = [f"## {recipe}", "", (module.__doc__ or "").strip().replace("\n", " "), ""]
    for dataset in presets:
        if dataset in module.PROTOCOLS:
            lines += protocol_table(recipe, dataset, module.PROTOCOLS[dataset])
    without = [dataset for dataset in presets if dataset in module.WITHOUT_ORIGINAL]
    if without:
        lines += ["Presets without an original:", ""]
        lines += [f"- {dataset}: {module.WITHOUT_ORIGINAL[dataset]}" for dataset in without]
        lines.append("")
    return lines


def summary() -> list[str]:
    """One line per table: how many settings it records, differ, and are not yet matched."""
    lines = [
        "| recipe | dataset | settings | differ | not yet matched |",
        "|---|---|---|---|---|",
    ]
    for recipe in sorted(RECIPES.names()):
        for dataset, protocol in sorted(originals_of(recipe).PROTOCOLS.items()):
            settings = resolved_settings(recipe, dataset)
            rows = protocol.rows
            differing = [
                row for row in rows if not same(resolved_value(settings, row.setting), row.value)
            ]
            open_ = sum(row.reason.startswith(NOT_YET_MATCHED) for row in differing)
            open_ += sum(gap.reason.startswith(NOT_YET_MATCHED) for gap in protocol.unmatched)
            lines.append(f"| {recipe} | {dataset} | {len(rows)} | {len(differing)} | {open_} |")
    return lines


def not_yet_matched() -> list[str]:
    """Every difference recorded as not yet matched, one line each, for the summary."""
    found = []
    for recipe in sorted(RECIPES.names()):
        module = originals_of(recipe)
        for dataset, protocol in sorted(module.PROTOCOLS.items()):
            for row in protocol.rows:
                if row.reason.startswith(NOT_YET_MATCHED):
                    found.append(f"- {recipe} on {dataset}: `{row.setting}`: {row.reason}")
            for gap in protocol.unmatched:
                if gap.reason.startswith(NOT_YET_MATCHED):
                    found.append(f"- {recipe} on {dataset}: {gap.what}: {gap.reason}")
    return found


def card() -> str:
    lines = [HEADER, "## Summary", "", *summary(), "", "## Not yet matched", ""]
    lines += not_yet_matched() or ["- none"]
    lines.append("")
    for recipe in sorted(RECIPES.names()):
        lines += recipe_section(recipe)
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(card(), end="")

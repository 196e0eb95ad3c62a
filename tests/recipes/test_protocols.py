"""The protocol card (docs/PROTOCOLS.md, issue 22): every paper preset's resolved value is the
original's recorded value (recipes/originals) or carries its reason, every row names a real
setting, every preset has a table or says why not, and the card is current."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from cluster_ssl.commands.config_card import resolved_settings
from recipes import RECIPES
from recipes.originals import Original, Protocol, originals_of, resolved_value, same
from tools.protocols import card, problems

REPO = Path(__file__).resolve().parents[2]

ROWS = [
    pytest.param(recipe, dataset, row, id=f"{recipe}-{dataset}-{row.setting}")
    for recipe in RECIPES.names()
    for dataset, protocol in originals_of(recipe).PROTOCOLS.items()
    for row in protocol.rows
]


@cache
def settings_of(recipe: str, dataset: str) -> dict:
    """``resolved_settings`` once per preset (read only here)."""
    return resolved_settings(recipe, dataset)


def test_the_card_is_current():
    """Regenerate with ``python tools/protocols.py > docs/PROTOCOLS.md``."""
    assert (REPO / "docs" / "PROTOCOLS.md").read_text() == card()


@pytest.mark.parametrize(("recipe", "dataset", "row"), ROWS)
def test_row_names_a_real_setting(recipe, dataset, row):
    """A renamed setting cannot leave its row behind unnoticed."""
    resolved_value(settings_of(recipe, dataset), row.setting)


@pytest.mark.parametrize(("recipe", "dataset", "row"), ROWS)
def test_preset_differs_from_the_original_only_with_a_reason(recipe, dataset, row):
    ours = resolved_value(settings_of(recipe, dataset), row.setting)
    if same(ours, row.value):
        assert not row.reason, f"{row.setting} matches the original now: drop the reason"
    else:
        assert row.reason, f"{row.setting}: ours {ours!r}, the original's {row.value!r}"


@pytest.mark.parametrize(("recipe", "dataset", "row"), ROWS)
def test_row_says_where_its_value_comes_from(recipe, dataset, row):
    assert row.source.strip()


@pytest.mark.parametrize("recipe", RECIPES.names())
def test_every_preset_has_a_table_or_says_why_not(recipe):
    module = originals_of(recipe)
    presets = set(RECIPES.get(recipe).presets)
    assert set(module.PROTOCOLS) | set(module.WITHOUT_ORIGINAL) == presets
    assert not set(module.PROTOCOLS) & set(module.WITHOUT_ORIGINAL)


@pytest.mark.parametrize("recipe", RECIPES.names())
def test_a_table_records_each_setting_once(recipe):
    for protocol in originals_of(recipe).PROTOCOLS.values():
        names = [row.setting for row in protocol.rows]
        assert len(names) == len(set(names))


def test_a_changed_preset_is_flagged(monkeypatch):
    """A preset moved off the original without a reason fails the check and shows in the
    card; a reason makes it pass."""
    assert problems("scan", "cifar10") == []
    preset = RECIPES.get("scan").presets["cifar10"]
    monkeypatch.setitem(preset, "scan.lr", 1e-3)
    assert problems("scan", "cifar10") == ["scan.lr: ours 0.001, original 0.0001, no reason"]
    assert "| `scan.lr` | `0.001` | **≠** | `0.0001` |" in card()

    module = originals_of("scan")
    rows = tuple(
        Original(row.setting, row.value, row.source, reason="a test's reason")
        if row.setting == "scan.lr"
        else row
        for row in module.PROTOCOLS["cifar10"].rows
    )
    monkeypatch.setitem(module.PROTOCOLS, "cifar10", Protocol(rows))
    assert problems("scan", "cifar10") == []


def test_a_renamed_setting_is_flagged(monkeypatch):
    module = originals_of("cc")
    renamed = Original("instance_tau", 0.5, "a test")
    protocol = module.PROTOCOLS["cifar10"]
    monkeypatch.setitem(module.PROTOCOLS, "cifar10", Protocol((*protocol.rows, renamed)))
    assert problems("cc", "cifar10") == ["instance_tau: not a setting of cc"]


def test_a_reason_left_on_a_matched_value_is_flagged(monkeypatch):
    module = originals_of("cc")
    stale = Original("lr", 3e-4, "a test", reason="no longer true")
    rows = tuple(stale if row.setting == "lr" else row for row in module.PROTOCOLS["cifar10"].rows)
    monkeypatch.setitem(module.PROTOCOLS, "cifar10", Protocol(rows))
    assert problems("cc", "cifar10") == ["lr: a reason recorded but the values are the same"]


@pytest.mark.parametrize(
    ("ours", "original", "expected"),
    [
        ((500, 500, 2000), [500, 500, 2000], True),
        (0.1 + 0.2, 0.3, True),
        (1e-4, 1e-3, False),
        (None, None, True),
        (0, False, False),
        (True, True, True),
        ("train", "train+test", False),
    ],
)
def test_values_compare_as_settings(ours, original, expected):
    assert same(ours, original) is expected


def test_a_dotted_name_reads_a_stage_setting():
    settings = {"lr": 0.1, "scan": {"lr": 5.0}}
    assert resolved_value(settings, "scan.lr") == 5.0
    with pytest.raises(KeyError):
        resolved_value(settings, "lr.scan")
    with pytest.raises(KeyError):
        resolved_value(settings, "scan.momentum")

"""Recipe configs: presets, --set parsing and its errors."""

from dataclasses import dataclass

import pytest

from cluster_ssl.config import RecipeConfig, as_dict, build_config, parse_assignments
from cluster_ssl.runtime.errors import UserError


@dataclass
class ToyConfig(RecipeConfig):
    lr: float = 0.1
    dims: tuple[int, ...] = (500, 500)
    gamma: float | None = None
    flag: bool = False
    name: str = "x"


def test_defaults_then_preset_then_overrides():
    cfg = build_config(ToyConfig, {"lr": 0.5, "epochs": 3}, {"lr": "0.25"})
    assert cfg.lr == 0.25 and cfg.epochs == 3 and cfg.dims == (500, 500)


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("dims", "10,20,30", (10, 20, 30)),
        ("gamma", "none", None),
        ("gamma", "0.1", 0.1),
        ("flag", "true", True),
        ("flag", "0", False),
        ("num_clusters", "7", 7),
        ("name", "abc", "abc"),
    ],
)
def test_values_are_parsed_to_the_declared_type(key, text, expected):
    assert getattr(build_config(ToyConfig, {}, {key: text}), key) == expected


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown setting 'lrr'.*valid keys: .*\blr\b"):
        build_config(ToyConfig, {}, {"lrr": "1"})


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("lr", "fast", "a finite number"),
        ("lr", "nan", "a finite number"),
        ("lr", "-inf", "a finite number"),
        ("gamma", "inf", "a finite number"),
        ("epochs", "1.5", "a whole number"),
        ("flag", "maybe", "true or false"),
        ("dims", "500,x", "comma-separated whole numbers"),
    ],
)
def test_bad_value_names_what_is_expected(key, text, expected):
    with pytest.raises(UserError, match=f"^--set {key}='{text}': expected {expected}$"):
        build_config(ToyConfig, {}, {key: text})


def test_a_tuple_read_back_from_json_is_a_tuple_again():
    assert build_config(ToyConfig, {}, {"dims": [64, 32]}).dims == (64, 32)


def test_assignments_need_an_equals_sign():
    assert parse_assignments(["a=1", " b = x=y "]) == {"a": "1", "b": "x=y"}
    with pytest.raises(UserError, match="key=value"):
        parse_assignments(["lr"])


@pytest.mark.parametrize(
    ("recipe", "setting", "message"),
    [
        ("dec", "pretrain.dropout=1.5", "pretrain.dropout=1.5: must be below 1"),
        ("dec", "momentum=1", "momentum=1.0: must be below 1"),
        ("idfd", "bank_momentum=-2", "bank_momentum=-2.0: must not be negative"),
        ("pcl", "encoder_momentum=1", "encoder_momentum=1.0: must be below 1"),
        ("simclr", "final_lr_fraction=-1", "final_lr_fraction=-1.0: must not be negative"),
        ("simclr", "crop_scale=1.5", "crop_scale=1.5: must be at most 1"),
        ("simclr", "milestones=0.75,0.5", "milestones=0.75,0.5: give increasing fractions"),
        ("simclr", "milestones=600,950", "milestones=600.0,950.0: give increasing fractions"),
    ],
)
def test_values_outside_their_range_are_refused_before_training(recipe, setting, message):
    from recipes import RECIPES

    spec = RECIPES.get(recipe)
    key, value = setting.split("=")
    with pytest.raises(UserError, match=f"^--set {message}"):
        build_config(spec.config, {}, {key: value})
    assert build_config(spec.config, {}, {}) is not None  # the defaults are in range


def test_a_stage_group_is_set_with_a_dotted_key_and_checked_at_its_field():
    from recipes import RECIPES

    spec = RECIPES.get("scan")
    config = build_config(spec.config, spec.preset("digits"), {"scan.lr": "0.01"})
    assert config.scan.lr == 0.01 and config.selflabel.lr == 1e-4
    with pytest.raises(UserError, match=r"^--set scan.num_heads=0: must be greater than 0$"):
        build_config(spec.config, {}, {"scan.num_heads": "0"})
    with pytest.raises(UserError, match="did you mean scan.lr"):
        build_config(spec.config, {}, {"scan.lrr": "0.1"})


def test_an_old_flat_key_names_its_new_one_and_old_runs_still_rebuild():
    from cluster_ssl.commands.claim import changed_settings
    from cluster_ssl.commands.prepare import prepare
    from recipes import RECIPES

    spec = RECIPES.get("scan")
    with pytest.raises(UserError, match="this setting is now scan.lr; write --set scan.lr="):
        build_config(spec.config, {}, {"scan_lr": "0.01"})
    old = {"scan_lr": "0.01", "confidence_threshold": "0.5", "split": "test", "eval_split": None}
    record = {"recipe": "scan", "dataset": "digits", "data_root": None, "overrides": old}
    config = prepare(record).config  # a run.json written before the groups
    assert config.scan.lr == 0.01 and config.selflabel.confidence_threshold == 0.5
    assert changed_settings("scan", old, {"scan.lr": "1e-2"}) == []
    assert changed_settings("scan", old, {"scan.lr": "0.1"}) == ["scan.lr (was 0.01, now 0.1)"]


def test_a_subclass_that_changes_a_default_keeps_its_bases_range():
    from recipes import RECIPES

    spec = RECIPES.get("simclr")  # SimCLRConfig redeclares epochs = 500
    with pytest.raises(UserError, match="--set epochs=0: must be greater than 0"):
        build_config(spec.config, {}, {"epochs": "0"})


def test_settings_flatten_to_the_keys_set_takes():
    from cluster_ssl.config import flat_settings, setting_keys
    from recipes import RECIPES

    for recipe in RECIPES.values():
        config = build_config(recipe.config, {}, {})
        assert set(flat_settings(as_dict(config))) - {"pretext_settings"} == set(
            setting_keys(recipe.config)
        ) - {"pretext_settings"}, recipe.name


def test_every_renamed_key_points_at_a_setting_and_is_no_setting_itself():
    from cluster_ssl.config import setting_keys
    from recipes import RECIPES

    for recipe in RECIPES.values():
        keys = set(setting_keys(recipe.config))
        assert set(recipe.config.renamed.values()) <= keys, recipe.name
        assert not set(recipe.config.renamed) & keys, recipe.name

"""``--init-from``: a recipe starts from another run's backbone (or autoencoder), found under
whatever prefix the source method keeps it, loaded strictly with every mismatch named."""

import json

import pytest
import torch

from cluster_ssl.cli import main
from cluster_ssl.commands.prepare import prepare
from cluster_ssl.engine.checkpoint import load_checkpoint
from cluster_ssl.engine.init_from import init_network_from
from cluster_ssl.runtime.errors import UserError

TINY = ["--set", "split=test", "--set", "image_size=8", "--set", "kmeans_restarts=1"]
FAST = ["--epochs", "1", "--no-progress", *TINY]


@pytest.fixture(scope="module")
def simclr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("init") / "simclr"
    assert main(["train", "simclr", "--dataset", "digits", "--out", str(out), *FAST]) == 0
    return out


def build(recipe, **overrides):
    record = {"recipe": recipe, "dataset": "digits", "data_root": None}
    settings = {"split": "test", "image_size": 8, **overrides}
    return prepare({**record, "overrides": settings}).stages[0].method


@pytest.mark.parametrize("recipe", ["cc", "idfd", "simclr_dec", "scan"])
def test_another_recipe_starts_from_the_simclr_backbone(simclr_run, recipe):
    method = build(recipe)
    line = init_network_from(method, simclr_run)  # a run directory: its last stage
    source = load_checkpoint(simclr_run / "stages" / "01-simclr.pt")["method"]
    for name, value in method.backbone.state_dict().items():
        torch.testing.assert_close(value, source[f"backbone.{name}"], rtol=0, atol=0)
    assert "initialised the Backbone" in line and "keys under 'backbone.'" in line


def test_pcls_momentum_encoder_restarts_from_the_loaded_backbone(simclr_run):
    method = build("pcl", queue_size=64)
    init_network_from(method, simclr_run)
    copies = list(method.key_encoder.encoder[0].parameters())
    for copy, loaded in zip(copies, method.backbone.parameters(), strict=True):
        torch.testing.assert_close(copy, loaded, rtol=0, atol=0)


def test_mismatches_are_named_and_nothing_is_loaded(simclr_run):
    wider = build("cc", width=0.5)
    before = {k: v.clone() for k, v in wider.backbone.state_dict().items()}
    with pytest.raises(UserError, match="shape mismatch at net.bn1.bias"):
        init_network_from(wider, simclr_run)
    assert all(torch.equal(v, before[k]) for k, v in wider.backbone.state_dict().items())
    autoencoder = build("dec")
    with pytest.raises(UserError, match="do not match the model: missing keys decoder"):
        init_network_from(autoencoder, simclr_run)


def test_the_command_line_records_it_and_says_what_it_loaded(simclr_run, tmp_path, capsys):
    out = tmp_path / "cc"
    argv = ["train", "cc", "--dataset", "digits", "--out", str(out), *FAST]
    assert main([*argv, "--init-from", str(simclr_run / "stages" / "01-simclr.pt")]) == 0
    assert "initialised the Backbone from" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["init_from"].endswith("01-simclr.pt")
    missing = tmp_path / "nowhere.pt"
    again = ["train", "cc", "--dataset", "digits", "--out", str(tmp_path / "x"), *FAST]
    assert main([*again, "--init-from", str(missing)]) == 2
    assert f"--init-from: no checkpoint at {missing}" in capsys.readouterr().err
    assert not (tmp_path / "x" / "run.json").exists()

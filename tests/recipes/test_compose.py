"""Pretexts, heads and losses combine by configuration: SCAN's clustering step on an IDFD or
a PCL pretext, DEC's clustering layer on an IDFD backbone, built from ``--set`` settings
alone (no class per combination) and trained a few steps each by the real trainer."""

import json

import pytest
import torch

from cluster_ssl.commands.prepare import prepare
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.trainer import Trainer, TrainSettings
from cluster_ssl.methods.base import StageContext
from cluster_ssl.methods.idfd import IDFD
from cluster_ssl.methods.pcl import PCL
from cluster_ssl.methods.pretext_dec import PretextDEC
from cluster_ssl.methods.scan import SCAN
from cluster_ssl.runtime.errors import UserError

SMALL = {"split": "test", "eval_split": None, "image_size": 8, "kmeans_restarts": 1}
FOR = {
    "scan": {
        "batch_size": 32,
        "scan.batch_size": 32,
        "selflabel.batch_size": 32,
        "scan.num_neighbours": 3,
        "selflabel.confidence_threshold": 0.0,
    },
    "simclr_dec": {"batch_size": 32, "dec.batch_size": 32, "dec.update_interval": 2},
}
MIXES = [("scan", "idfd", IDFD), ("scan", "pcl", PCL), ("simclr_dec", "idfd", IDFD)]


def build(recipe, pretext):
    torch.manual_seed(0)
    overrides = {**SMALL, **FOR[recipe], "pretext": pretext}
    if pretext == "pcl":  # its digits preset's queue (512) needs the 1,438 training images
        overrides["split"] = "train"
    record = {"recipe": recipe, "dataset": "digits", "data_root": None}
    return prepare({**record, "overrides": overrides})


@pytest.mark.parametrize(("recipe", "pretext", "kind"), MIXES)
def test_a_mix_built_from_settings_alone_trains(recipe, pretext, kind, tmp_path):
    prepared = build(recipe, pretext)
    first, second = prepared.stages[0].method, prepared.stages[1].method
    assert isinstance(first, kind)
    if recipe == "scan":
        assert isinstance(second, SCAN) and second.backbone is first.backbone
    else:
        assert isinstance(second, PretextDEC) and second.pretext is first
    trainer = Trainer(TrainSettings(log_every=1, progress=False), RunLogger(tmp_path, enabled=True))
    ctx = StageContext(prepared.dataset, torch.device("cpu"), 0, num_workers=0)
    for index, stage in enumerate(prepared.stages):
        stage.epochs, stage.max_steps, stage.eval_every = 1, 3, 0
        ctx.step = 0
        trainer.fit(
            stage, ctx, tmp_path / f"{index}.pt", stage_index=index, resume=None, run_config={}
        )
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = {}
    for record in records:
        if "loss" in record:
            losses.setdefault(record["stage"], []).append(record["loss"])
    assert set(losses) == {stage.name for stage in prepared.stages}
    assert all(
        len(values) == 3 and all(map(torch.isfinite, torch.tensor(values)))
        for values in losses.values()
    )


def test_an_unknown_pretext_is_named():
    with pytest.raises(UserError, match="--set pretext=byol: use one of simclr, idfd, pcl"):
        build("scan", "byol")


def test_set_gives_the_pretexts_own_settings_and_the_run_keeps_its_own():
    record = {"recipe": "scan", "dataset": "digits", "data_root": None}
    given = {"queue_size": "64", "lr": "0.05", "num_prototypes": "12,24", "temperature": "0.3"}
    dotted = {f"pretext.{key}": value for key, value in given.items()}
    overrides = {**SMALL, **FOR["scan"], "pretext": "pcl", **dotted}
    prepared = prepare({**record, "overrides": overrides})  # 359 test images: fits 64
    pcl = prepared.stages[0].method
    assert isinstance(pcl, PCL) and pcl.queue.keys.shape[0] == 64
    assert pcl.num_prototypes == (12, 24) and pcl.temperature == 0.3
    assert pcl.configure_optimizer().param_groups[0]["lr"] == 0.05
    assert prepared.config.pretext_settings == given
    assert prepared.config.kmeans_restarts == 1  # the run's own k-means (SMALL's)
    assert prepared.stages[0].batch_size == 32  # the run's own batch and image settings
    assert pcl.backbone.net.conv1.in_channels == 1 and prepared.config.image_size == 8
    with pytest.raises(UserError, match="queue_size=4096 does not fit the 359 training images"):
        prepare({**record, "overrides": {**overrides, "pretext.queue_size": "4096"}})
    with pytest.raises(UserError, match="'queue_sise' .* did you mean queue_size"):  # PCL's check
        prepare({**record, "overrides": {**overrides, "pretext.queue_sise": "64"}})
    simclr = {**SMALL, **FOR["scan"], "pretext.queue_size": "64"}  # SimCLR is no other pretext
    with pytest.raises(UserError, match="SimCLR is this recipe's own pretext"):
        prepare({**record, "overrides": simclr})
    with pytest.raises(
        UserError, match="setting of the pretext pcl: write --set pretext.queue_size="
    ):
        prepare({**record, "overrides": {**SMALL, "pretext": "pcl", "queue_size": "64"}})


def test_pretext_settings_survive_run_json_and_resume_compares_them_as_parsed():
    from cluster_ssl.commands.claim import changed_settings
    from cluster_ssl.config import as_dict

    given = {"pretext": "pcl", "pretext.queue_size": 64, "pretext.num_prototypes": (12, 24)}
    record = {"recipe": "scan", "dataset": "digits", "data_root": None}
    record["overrides"] = {**SMALL, **FOR["scan"], **given}
    stored = json.loads(json.dumps(record))  # run.json keeps the tuple as a list
    assert as_dict(prepare(stored).config) == as_dict(prepare(record).config)
    spelled = {"pretext.queue_size": "064", "pretext.num_prototypes": "12,24"}  # the same
    assert changed_settings("scan", stored["overrides"], spelled) == []
    moved = changed_settings("scan", stored["overrides"], {"pretext.queue_size": "32"})
    assert moved == ["pretext.queue_size (was 64, now 32)"]

"""CC on STL-10 as CC's train_STL10.py: the unlabelled images train the instance loss alone,
in their own batches before the labelled ones each epoch."""

import json

import pytest
import torch

from cluster_ssl.cli import main
from cluster_ssl.commands.config_card import resolved_settings
from cluster_ssl.commands.prepare import prepare
from cluster_ssl.losses.cc import cluster_contrastive_loss, instance_contrastive_loss
from cluster_ssl.methods.base import StageContext
from cluster_ssl.methods.cc import CC
from tests.data_formats import write_stl10

SMALL = {  # the STL-10 preset on a quarter-width ResNet-18 at 16 px
    "backbone": "resnet18",
    "width": 0.25,
    "stem": "cifar",
    "image_size": 16,
    "batch_size": 4,
    "epochs": 1,
    "eval_every": 0,
}
LABELLED, UNLABELLED = 10, 10  # train 6 + test 4, then the unlabelled split


@pytest.fixture
def stl_root(tmp_path):
    write_stl10(tmp_path, n_train=6, n_test=4, n_unlabeled=UNLABELLED)
    return tmp_path


def build(root, **overrides):
    prepared = prepare(
        {"recipe": "cc", "dataset": "stl10", "data_root": root, "overrides": {**SMALL, **overrides}}
    )
    method = prepared.stages[0].method
    ctx = StageContext(prepared.dataset, torch.device("cpu"), seed=0, num_workers=0)
    method.on_epoch_start(ctx)
    return method, ctx


def batch_of(dataset, index):
    index = torch.as_tensor(index)
    return {"image": torch.stack([dataset[int(i)]["image"] for i in index]), "index": index}


def test_the_stl10_preset_is_cc_train_stl10():
    settings = resolved_settings("cc", "stl10")
    assert settings["split"] == "train+test+unlabeled" and settings["eval_split"] == "train+test"
    assert settings["unlabelled_instance_only"] is True
    assert resolved_settings("cc", "cifar10")["unlabelled_instance_only"] is False


def test_each_epoch_takes_the_unlabelled_images_first_then_the_labelled(stl_root):
    method, ctx = build(stl_root)
    assert len(ctx.dataset) == LABELLED + UNLABELLED
    first = method.sample_order(ctx)
    assert sorted(first[:UNLABELLED].tolist()) == list(range(LABELLED, LABELLED + UNLABELLED))
    assert sorted(first[UNLABELLED:].tolist()) == list(range(LABELLED))
    assert torch.equal(first, method.sample_order(ctx))  # seeded by (seed, epoch)
    ctx.epoch = 1
    assert not torch.equal(first, method.sample_order(ctx))


@pytest.mark.parametrize(
    ("rows", "instance_only"),
    [
        ([10, 11, 12, 13], True),  # unlabelled
        ([0, 1, 2, 3], False),  # train+test
        ([8, 9, 10, 11], True),  # where the two parts meet
    ],
)
def test_unlabelled_batches_train_the_instance_loss_alone(stl_root, rows, instance_only):
    method, ctx = build(stl_root)
    method.train()
    torch.manual_seed(0)
    batch = batch_of(ctx.dataset, rows)
    out = method.training_step(batch)
    out["loss"].backward()
    torch.manual_seed(0)  # the same views again, for the losses written out
    view_a, view_b = method.augment(method.views, batch["image"])
    h_a, h_b = method.backbone(view_a), method.backbone(view_b)
    instance = instance_contrastive_loss(
        method.instance_head(h_a), method.instance_head(h_b), method.instance_temperature
    )
    cluster, _ = cluster_contrastive_loss(
        method.cluster_head(h_a), method.cluster_head(h_b), method.cluster_temperature
    )
    expected = instance if instance_only else instance + cluster
    torch.testing.assert_close(out["loss"], expected, rtol=1e-5, atol=1e-6)
    assert ("cluster" in out) is not instance_only
    head_grads = [p.grad for p in method.cluster_head.parameters()]
    assert all(g is None for g in head_grads) is instance_only  # Adam skips the head
    assert all(p.grad is not None for p in method.instance_head.parameters())


def test_without_the_setting_unlabelled_images_train_both_losses(stl_root):
    method, ctx = build(stl_root, unlabelled_instance_only=False)
    assert method.sample_order(ctx) is None
    method.train()
    assert "cluster" in method.training_step(batch_of(ctx.dataset, [10, 11, 12, 13]))


def test_a_run_trains_on_all_and_scores_train_and_test(stl_root, tmp_path, monkeypatch):
    decided = []
    original = CC._instance_only

    def recording(self, batch):
        decided.append(original(self, batch))
        return decided[-1]

    monkeypatch.setattr(CC, "_instance_only", recording)
    out = tmp_path / "run"
    sets = [item for key, value in SMALL.items() for item in ("--set", f"{key}={value}")]
    argv = ["train", "cc", "--dataset", "stl10", "--data-root", str(stl_root), "--out", str(out)]
    assert main([*argv, *sets, "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_split"] == "train+test" and summary["num_images"] == LABELLED
    # 20 images in batches of 4: the unlabelled ones' 3 batches, where they meet, the
    # labelled ones' 2 (the order is drawn per epoch, so the meeting batch may be pure)
    assert len(decided) == 5 and decided[:2] == [True, True] and decided[-1] is False

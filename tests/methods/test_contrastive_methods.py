"""SimCLR, CC and IDFD as their recipes build them (digits CPU presets, shrunk): losses fall,
each method predicts the way its paper does, IDFD's memory bank is updated row by row, and
the trainer's online monitor logs its metrics and warns about collapse with the method's hint."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.commands.prepare import prepare
from cluster_ssl.commands.train import predict_method
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.trainer import Trainer, TrainSettings
from cluster_ssl.eval.metrics import evaluate_clustering
from cluster_ssl.methods.base import StageContext
from cluster_ssl.runtime.distributed import DistInfo

RECIPES = ("simclr", "cc", "idfd")
# the digits CPU preset (quarter-width ResNet-18, Adam), on the 359 test images at 8 px
TINY = {
    "split": "test",
    "eval_split": None,
    "image_size": 8,
    "batch_size": 64,
    "kmeans_restarts": 2,
}
STEPS = 50  # over seeds 0-11 the last-5 mean is 1.7% to 11% below the first-5 mean
BATCH = 64
CPU = torch.device("cpu")


def build(recipe, **overrides):
    """The recipe's own stage (method, epochs, batch size, eval cadence) and dataset."""
    prepared = prepare(
        {
            "recipe": recipe,
            "dataset": "digits",
            "data_root": None,
            "overrides": {**TINY, **overrides},
        }
    )
    return prepared.stages[0], prepared.dataset


def context(dataset, training_data=True):
    return StageContext(dataset, CPU, seed=0, num_workers=0, training_data=training_data)


def batch_of(dataset, index):
    return {"image": dataset.images[index], "index": index}


def train_steps(recipe, seed=0, overrides=None):
    torch.manual_seed(seed)
    stage, dataset = build(recipe, **(overrides or {}))
    method = stage.method
    optimizer = method.configure_optimizer()
    generator = torch.Generator().manual_seed(seed)
    losses = []
    method.train()
    for _ in range(STEPS):
        index = torch.randint(len(dataset), (BATCH,), generator=generator)
        loss = method.training_step(batch_of(dataset, index))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return method, dataset, losses


@pytest.fixture(scope="module")
def trained():
    cache = {}

    def get(recipe):
        if recipe not in cache:
            cache[recipe] = train_steps(recipe)
        return cache[recipe]

    return get


def predict(method, dataset, training_data=True):
    method.eval()
    try:
        with torch.no_grad():
            return method.predict(context(dataset, training_data=training_data))

    finally:
        method.train()


@pytest.mark.parametrize("recipe", RECIPES)
def test_loss_falls(trained, recipe):
    _, _, losses = trained(recipe)
    assert all(np.isfinite(losses))
    early, late = np.mean(losses[:5]), np.mean(losses[-5:])
    assert late < 0.995 * early, (early, late)


def test_simclr_predicts_kmeans_labels_on_a_normalised_embedding(trained):
    method, dataset, _ = trained("simclr")
    prediction = predict(method, dataset)
    assert prediction.num_clusters == 10
    assert prediction.labels.shape == (len(dataset),)
    assert prediction.labels.min() >= 0 and prediction.labels.max() < 10
    assert len(np.unique(prediction.labels)) > 1
    z = prediction.embedding
    assert z.shape == (len(dataset), method.backbone.feature_dim)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    # the embedding is the backbone's, on un-augmented images
    with torch.no_grad():
        method.eval()
        direct = method.features(batch_of(dataset, torch.arange(4)))
        method.train()
    np.testing.assert_allclose(z[:4], direct.numpy(), atol=1e-5)


def test_cc_predicts_the_argmax_of_its_cluster_head(trained):
    method, dataset, _ = trained("cc")
    prediction = predict(method, dataset)
    index = torch.tensor([0, 1, 57, 200, len(dataset) - 1])
    method.eval()
    with torch.no_grad():
        probs = method.cluster_head(method.backbone(method.eval_transform(dataset.images[index])))
    method.train()
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(len(index)))
    np.testing.assert_array_equal(prediction.labels[index.numpy()], probs.argmax(dim=1).numpy())
    np.testing.assert_allclose(
        prediction.confidence[index.numpy()], probs.max(dim=1).values.numpy(), atol=1e-5
    )
    assert prediction.labels.shape == (len(dataset),) and prediction.num_clusters == 10
    np.testing.assert_allclose(np.linalg.norm(prediction.embedding, axis=1), 1.0, atol=1e-5)


def test_idfd_step_moves_only_the_batch_rows_of_the_bank():
    torch.manual_seed(0)
    stage, dataset = build("idfd")
    method = stage.method
    method.train()
    optimizer = method.configure_optimizer()
    index = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:BATCH]
    before = method.bank.memory.clone()
    np.testing.assert_allclose(before.norm(dim=1).numpy(), 1.0, atol=1e-5)

    torch.manual_seed(1)  # the same augmentation as the step below
    with torch.no_grad():
        f = method.head(method.backbone(method.view(dataset.images[index])))
    torch.manual_seed(1)
    loss = method.training_step(batch_of(dataset, index))["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    after = method.bank.memory

    others = torch.ones(len(dataset), dtype=torch.bool)
    others[index] = False
    assert torch.equal(after[others], before[others])
    assert ((after[index] - before[index]).norm(dim=1) > 1e-3).all()
    torch.testing.assert_close(after.norm(dim=1), torch.ones(len(dataset)))
    expected = F.normalize(0.5 * before[index] + 0.5 * F.normalize(f, dim=1), dim=1)
    torch.testing.assert_close(after[index], expected, atol=1e-5, rtol=1e-5)


def test_idfd_clusters_on_the_bank_of_its_training_set(trained, monkeypatch):
    method, dataset, _ = trained("idfd")
    assert method.cluster_on == "bank" and method.bank.num_samples == len(dataset)

    def no_forward(batch):
        raise AssertionError("the training set is clustered on the bank, not the backbone")

    with monkeypatch.context() as patch:
        patch.setattr(method, "features", no_forward)
        prediction = predict(method, dataset)
    bank = F.normalize(method.bank.memory, dim=1).numpy()
    np.testing.assert_allclose(prediction.embedding, bank, atol=1e-6)
    assert prediction.labels.shape == (len(dataset),)
    assert prediction.labels.min() >= 0 and prediction.labels.max() < 10

    # another split (not what the bank describes) is clustered on the backbone embedding
    from cluster_ssl.data.registry import build_dataset

    other = build_dataset("digits", split="train", image_size=8)
    prediction = predict(method, other, training_data=False)

    assert prediction.embedding.shape == (len(other), method.backbone.feature_dim)
    assert prediction.labels.shape == (len(other),)


@pytest.mark.parametrize("recipe", RECIPES)
def test_online_monitor_logs_clustering_and_knn_metrics(tmp_path, recipe):
    torch.manual_seed(0)
    stage, dataset = build(recipe, epochs=1, eval_every=1)
    assert stage.epochs == 1 and stage.eval_every == 1 and stage.batch_size == BATCH
    logger = RunLogger(tmp_path, enabled=True)
    result = Trainer(TrainSettings(progress=False), logger).fit(
        stage,
        context(dataset),
        tmp_path / "stage.pt",
        stage_index=0,
        resume=None,
        run_config={},
    )
    assert result["steps"] == len(dataset) // BATCH
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evaluations = [line for line in lines if "acc" in line]
    assert len(evaluations) == 1
    logged = evaluations[0]
    assert logged["stage"] == stage.name and logged["epoch"] == 1
    for key in ("acc", "nmi", "ari", "knn_acc"):
        assert np.isfinite(logged[key]), key
    assert 0.0 < logged["acc"] <= 1.0 and 0.0 <= logged["knn_acc"] <= 1.0
    assert 1 <= logged["clusters_used"] <= 10 and sum(logged["cluster_sizes"]) == len(dataset)
    assert any("loss" in line and "lr" in line for line in lines)  # the step log


@pytest.mark.parametrize("recipe", ["simclr", "idfd"])
def test_online_monitor_scores_the_heldout_split_as_the_final_line(tmp_path, recipe):
    """With a held-out evaluation split the monitor clusters and scores it (IDFD then
    clusters its embedding, not the training bank), so its figures are the final line's."""
    torch.manual_seed(0)
    prepared = prepare(
        {
            "recipe": recipe,
            "dataset": "digits",
            "data_root": None,
            "overrides": {**TINY, "split": "test", "eval_split": "train", "eval_every": 1},
        }
    )
    stage, dataset, heldout = prepared.stages[0], prepared.dataset, prepared.eval_dataset
    stage.epochs = 1
    ctx = StageContext(dataset, CPU, seed=0, num_workers=0, heldout=heldout)
    Trainer(TrainSettings(progress=False), RunLogger(tmp_path, enabled=True)).fit(
        stage, ctx, tmp_path / "stage.pt", stage_index=0, resume=None, run_config={}
    )
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = next(line for line in lines if "acc" in line)
    assert sum(logged["cluster_sizes"]) == len(heldout) != len(dataset)
    final = predict_method(stage, heldout, CPU, DistInfo(), 0, training_data=False, num_workers=0)
    scores = evaluate_clustering(heldout.labels, final.labels, final.num_clusters)
    assert logged["acc"] == pytest.approx(scores["acc"]) and logged["nmi"] == pytest.approx(
        scores["nmi"]
    )


def fit_one_epoch(stage, dataset, tmp_path):
    logger = RunLogger(tmp_path, enabled=True)
    Trainer(TrainSettings(progress=False), logger).fit(
        stage,
        context(dataset),
        tmp_path / "stage.pt",
        stage_index=0,
        resume=None,
        run_config={},
    )
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return next(line for line in lines if "clusters_used" in line)


def test_cc_collapse_is_reported_with_its_hint(tmp_path, capsys):
    # 200 clusters cannot all be filled by a cluster head after five steps on 359 images
    torch.manual_seed(0)
    stage, dataset = build("cc", epochs=1, eval_every=1, num_clusters=200)
    logged = fit_one_epoch(stage, dataset, tmp_path)
    assert logged["clusters_used"] < 200
    err = capsys.readouterr().err
    assert f"warning: collapse at epoch 1: only {logged['clusters_used']} of 200 clusters" in err
    assert stage.method.collapse_hint() in err
    assert "--set entropy_weight=" in err


def test_embedding_method_collapse_is_reported_with_its_hint(tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    stage, dataset = build("idfd", epochs=1, eval_every=1)
    method = stage.method
    real_predict = method.predict

    def one_cluster(ctx):
        prediction = real_predict(ctx)
        return Prediction(
            labels=np.zeros(len(ctx.dataset), dtype=np.int64),
            num_clusters=prediction.num_clusters,
            embedding=prediction.embedding,
        )

    monkeypatch.setattr(method, "predict", one_cluster)
    logged = fit_one_epoch(stage, dataset, tmp_path)
    assert logged["clusters_used"] == 1
    err = capsys.readouterr().err
    assert "warning: collapse at epoch 1: only 1 of 10 clusters are used" in err
    assert method.collapse_hint() in err and "--set lr=" in err


# --- how a step's views go through the backbone (BatchNorm statistics) ---------------------

#: the original code's choice: SCAN's simclr_train interleaves both views into one batch, CC's
#: Network.forward(x_i, x_j) calls the ResNet once per view, IDFD augments one view
ORIGINAL_PASSES = {"simclr": [2 * BATCH], "cc": [BATCH, BATCH], "idfd": [BATCH]}


def backbone_batches(method, dataset):
    """The batch size of every backbone forward pass of one training step."""
    sizes = []
    handle = method.backbone.register_forward_hook(lambda m, args, out: sizes.append(len(out)))
    try:
        method.training_step(batch_of(dataset, torch.arange(BATCH)))
    finally:
        handle.remove()
    return sizes


@pytest.mark.parametrize("recipe", RECIPES)
def test_default_backbone_passes_follow_the_original(recipe):
    torch.manual_seed(0)
    stage, dataset = build(recipe)
    stage.method.train()
    assert backbone_batches(stage.method, dataset) == ORIGINAL_PASSES[recipe]


@pytest.mark.parametrize(
    ("recipe", "one_batch", "passes"),
    [
        ("simclr", True, [2 * BATCH]),
        ("simclr", False, [BATCH, BATCH]),
        ("cc", True, [2 * BATCH]),
        ("cc", False, [BATCH, BATCH]),
    ],
)
def test_views_in_one_batch_switches_the_passes(recipe, one_batch, passes):
    torch.manual_seed(0)
    stage, dataset = build(recipe, views_in_one_batch=one_batch)
    assert stage.method.views_in_one_batch is one_batch
    stage.method.train()
    assert backbone_batches(stage.method, dataset) == passes


def batchnorm_buffers(module):
    return {
        name: buffer.clone()
        for name, buffer in module.named_buffers()
        if "running" in name or "num_batches" in name
    }


@pytest.mark.parametrize("recipe", ["simclr", "cc"])
@pytest.mark.parametrize("one_batch", [None, True, False])
def test_batchnorm_running_stats_after_one_step(recipe, one_batch):
    """After one step the backbone's running statistics are those of a copy of it run by
    hand on the step's two views: one concatenated pass, or one pass per view."""
    import copy

    torch.manual_seed(0)
    stage, dataset = build(recipe, views_in_one_batch=one_batch)
    method = stage.method
    method.train()
    reference = copy.deepcopy(method.backbone)
    views = []
    handle = method.views.register_forward_hook(lambda m, args, out: views.extend(out))
    method.training_step(batch_of(dataset, torch.arange(BATCH)))
    handle.remove()
    view_a, view_b = views

    def by_hand(together):
        copy_ = copy.deepcopy(reference)
        with torch.no_grad():
            if together:
                copy_(torch.cat([view_a, view_b]))
            else:
                copy_(view_a)
                copy_(view_b)
        return batchnorm_buffers(copy_)

    together = {"simclr": True, "cc": False}[recipe] if one_batch is None else one_batch
    got, expected = batchnorm_buffers(method.backbone), by_hand(together)
    assert got.keys() == expected.keys() and any("running_var" in name for name in got)
    for name in got:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)
    # the other choice gives other statistics (so the check above tells them apart)
    other = by_hand(not together)
    assert any(
        not torch.allclose(got[name], other[name], atol=1e-6, rtol=1e-5)
        for name in got
        if "running_var" in name
    )


@pytest.mark.parametrize(("recipe", "one_batch"), [("simclr", False), ("cc", True)])
def test_loss_falls_with_the_other_choice(recipe, one_batch):
    _, _, losses = train_steps(recipe, overrides={"views_in_one_batch": one_batch})
    assert all(np.isfinite(losses))
    early, late = np.mean(losses[:5]), np.mean(losses[-5:])
    assert late < 0.995 * early, (early, late)


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_choice_adds_no_state(recipe):
    """A plain attribute rebuilt from the settings: the checkpointed state is the same."""
    keys = []
    for one_batch in (True, False) if recipe != "idfd" else (None,):
        torch.manual_seed(0)
        stage, _ = build(recipe, views_in_one_batch=one_batch)
        keys.append(sorted(stage.method.state_dict()))
    assert all(k == keys[0] for k in keys)
    assert not any("views_in_one_batch" in key for key in keys[0])


@pytest.mark.parametrize(("recipe", "extra"), [("idfd", {}), ("pcl", {"queue_size": 128})])
@pytest.mark.parametrize("one_batch", [True, False])
def test_methods_without_two_views_through_one_network_refuse_the_choice(recipe, extra, one_batch):
    """IDFD augments one view; PCL's query and key views go through two networks (the
    query encoder and its momentum copy), each in its own shuffling-BN groups."""
    from cluster_ssl.runtime.errors import UserError

    with pytest.raises(UserError, match="views_in_one_batch must be None"):
        build(recipe, views_in_one_batch=one_batch, **extra)
    build(recipe, **extra)  # the default builds


def test_one_batch_needs_views_of_one_shape():
    torch.manual_seed(0)
    stage, dataset = build("simclr", views_in_one_batch=True)
    net, c = stage.method.backbone, dataset.image_shape[0]
    big, small = torch.zeros(2, c, 8, 8), torch.zeros(3, c, 6, 6)
    with pytest.raises(ValueError, match="views of one shape"):
        stage.method.encode_views(net, [big, small])
    stage.method.views_in_one_batch = False
    outs = stage.method.encode_views(net, [big, small])
    assert [len(out) for out in outs] == [2, 3]


def test_cc_in_one_batch_is_the_step_it_was_bit_for_bit():
    """views_in_one_batch=true is CC's step before the setting existed (backbone and both
    heads on the 2B rows at once): same losses, weights and running statistics."""
    from cluster_ssl.losses.cc import cluster_contrastive_loss, instance_contrastive_loss

    def concatenated_step(m, batch):
        view_a, view_b = m.augment(m.views, batch["image"])
        h = m.backbone(torch.cat([view_a, view_b]))
        z_a, z_b = m.instance_head(h).chunk(2)
        p_a, p_b = m.cluster_head(h).chunk(2)
        instance = instance_contrastive_loss(z_a, z_b, m.instance_temperature)
        cluster, _ = cluster_contrastive_loss(
            p_a,
            p_b,
            m.cluster_temperature,
            entropy_constant=m.entropy_constant,
            entropy_weight=m.entropy_weight,
        )
        return instance + cluster

    runs = []
    for step_of in (concatenated_step, lambda m, b: m.training_step(b)["loss"]):
        torch.manual_seed(0)
        stage, dataset = build("cc", views_in_one_batch=True)
        method = stage.method
        method.train()
        optimizer = method.configure_optimizer()
        losses = []
        for step in range(2):
            torch.manual_seed(100 + step)
            loss = step_of(
                method, batch_of(dataset, torch.arange(BATCH * step, BATCH * (step + 1)))
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        runs.append((losses, {k: v.clone() for k, v in method.state_dict().items()}))
    (old_losses, old_state), (new_losses, new_state) = runs
    assert old_losses == new_losses
    assert all(torch.equal(old_state[k], new_state[k]) for k in old_state)

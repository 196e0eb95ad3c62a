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
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.trainer import Trainer, TrainSettings
from cluster_ssl.methods.base import StageContext

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


def train_steps(recipe, seed=0):
    torch.manual_seed(seed)
    stage, dataset = build(recipe)
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

"""DeepCluster: PCA whitening, k-means with the empty-cluster rule, uniform sampling over
pseudo-classes, the per-epoch head re-initialisation, the Sobel layer, and the method as its
recipe builds it (digits test split at 8 px, shrunk), each against an independent computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from cluster_ssl.cluster.pca import fit_pca_whitening, pca_whiten
from cluster_ssl.cluster.reseed import fill_empty_clusters, kmeans_without_empty_clusters
from cluster_ssl.commands.prepare import prepare
from cluster_ssl.engine import trainer as trainer_module
from cluster_ssl.engine.checkpoint import load_checkpoint
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.trainer import Trainer, TrainSettings
from cluster_ssl.eval.metrics import cluster_accuracy
from cluster_ssl.methods.base import StageContext, epoch_seed
from cluster_ssl.methods.deepcluster import HEAD_INIT_STD, uniform_over_classes
from cluster_ssl.models.sobel import SobelFilter
from cluster_ssl.runtime.errors import UserError

CPU = torch.device("cpu")
# the digits CPU preset on the 359 test images at 8 px: 128 features, 20 pseudo-classes
TINY = {
    "split": "test",
    "eval_split": None,
    "image_size": 8,
    "batch_size": 64,
    "kmeans_restarts": 2,
    "num_pseudo_classes": 20,
    "pca_dim": 16,
}


def build(**overrides):
    prepared = prepare(
        {
            "recipe": "deepcluster",
            "dataset": "digits",
            "data_root": None,
            "overrides": {**TINY, **overrides},
        }
    )
    return prepared.stages[0], prepared.dataset


def context(dataset, epoch=0, seed=0):
    ctx = StageContext(dataset, CPU, seed=seed, num_workers=0)
    ctx.epoch = epoch
    return ctx


def new_epoch(method, ctx):
    method.eval()
    logs = method.on_epoch_start(ctx)
    method.train()
    return logs


def blobs(sizes, d=6, spread=0.1, seed=0):
    """Gaussian blobs with centres 10 apart on the axes; ``sizes`` points in each."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(sizes)), sizes)
    x = 10.0 * np.eye(len(sizes), d)[y] + spread * rng.standard_normal((len(y), d))
    return x.astype(np.float32), y


# ------------------------------------------------------------------------------- PCA whitening


def correlated(n=400, d=10, seed=0):
    """Rows with a known anisotropic covariance (eigenvalues from 25 down to 0.04)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    scales = np.geomspace(5.0, 0.2, d)
    return (rng.standard_normal((n, d)) * scales) @ basis.T + 3.0


def numpy_whitening(x, dim):
    """Independent: SVD of the centred data, y = X_c V_dim / sqrt(s^2 / N)."""
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    eigenvalues = s[:dim] ** 2 / len(x)
    return centred @ vt[:dim].T / np.sqrt(eigenvalues), eigenvalues


def test_pca_whitening_has_identity_covariance_and_matches_numpy():
    x = correlated()
    whitening = fit_pca_whitening(torch.from_numpy(x).float(), 6)
    y = whitening.whiten(torch.from_numpy(x).float()).double().numpy()
    assert y.shape == (400, 6)
    np.testing.assert_allclose(np.cov(y, rowvar=False, bias=True), np.eye(6), atol=1e-3)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-4)

    expected, eigenvalues = numpy_whitening(x, 6)
    np.testing.assert_allclose(whitening.eigenvalues.numpy(), eigenvalues, rtol=1e-4)
    # eigenvector signs are arbitrary: compare the sign-free Gram matrices
    np.testing.assert_allclose(y @ y.T, expected @ expected.T, atol=2e-3)


def test_pca_whiten_gives_unit_rows_of_the_normalised_whitening():
    x = correlated(seed=1)
    z = pca_whiten(torch.from_numpy(x).float(), 4).double().numpy()
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    expected = numpy_whitening(x, 4)[0]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(z @ z.T, expected @ expected.T, atol=1e-4)


def test_pca_dim_beyond_the_data_is_an_error():
    x = torch.randn(8, 5)
    for dim in (0, 6):  # d = 5 features
        with pytest.raises(UserError, match=rf"pca_dim={dim} is impossible .* between 1 and 5"):
            pca_whiten(x, dim)
    with pytest.raises(UserError, match=r"min\(N - 1, d\) = 3"):  # 4 centred samples
        pca_whiten(torch.randn(4, 5), 4)
    with pytest.raises(UserError, match="collapsed"):
        pca_whiten(torch.ones(8, 5), 2)


# ------------------------------------------------------------- k-means and the empty-cluster rule


def test_kmeans_without_empty_clusters_recovers_blobs_deterministically():
    x, y = blobs([40, 30, 50, 20])
    first = kmeans_without_empty_clusters(x, 4, seed=3)
    second = kmeans_without_empty_clusters(x, 4, seed=3)
    assert cluster_accuracy(y, first.labels) == 1.0
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.reseeded == 0


def forced_empty():
    """Two blobs (60 and 20 points) and a third centroid far from both: cluster 2 is empty."""
    x, y = blobs([60, 20], d=3)
    centroids = np.array([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 500.0]], dtype=np.float32)
    labels = ((x[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(labels, y)  # the starting assignment leaves 2 empty
    return x, centroids, labels


def test_empty_cluster_is_reseeded_by_splitting_the_donor():
    x, centroids, labels = forced_empty()
    result = fill_empty_clusters(x, centroids, labels, np.random.default_rng(0))
    sizes = np.bincount(result.labels, minlength=3)
    assert result.reseeded == 1 and (sizes > 0).all()

    donor = int(np.flatnonzero(sizes != np.bincount(labels, minlength=3))[0])
    assert donor in (0, 1)
    members = np.flatnonzero(labels == donor)
    other = 1 - donor
    # the other cluster is untouched; the donor's members are split between it and cluster 2
    np.testing.assert_array_equal(result.labels[labels == other], other)
    assert set(result.labels[members]) == {donor, 2}
    # the two centroids are the donor's mean, perturbed symmetrically by a small step
    mean = x[members].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose((result.centroids[2] + result.centroids[donor]) / 2, mean, atol=1e-5)
    radius = np.sqrt(((x[members] - mean) ** 2).sum(1).mean())
    step = np.linalg.norm(result.centroids[2] - mean)
    assert step == pytest.approx(1e-3 * radius, rel=1e-3)
    # and each member went to the nearer of the two
    dist = ((x[members, None] - result.centroids[None, [donor, 2]]) ** 2).sum(-1)
    np.testing.assert_array_equal(result.labels[members], np.array([donor, 2])[dist.argmin(1)])


def test_donor_is_drawn_with_probability_proportional_to_size():
    x, centroids, labels = forced_empty()  # sizes 60 and 20
    big_split = [
        (
            fill_empty_clusters(x, centroids, labels, np.random.default_rng(seed)).labels[:60] == 2
        ).any()
        for seed in range(400)
    ]
    assert np.mean(big_split) == pytest.approx(60 / 80, abs=0.07)


def test_more_clusters_than_natural_groups_leaves_none_empty():
    # 12 distinct points, each copied 5 times: 12-means has to give every point its own cluster
    rng = np.random.default_rng(0)
    points = rng.standard_normal((12, 4)).astype(np.float32)
    x = np.repeat(points, 5, axis=0)
    result = kmeans_without_empty_clusters(x, 12, seed=0, n_iter=2)
    assert (np.bincount(result.labels, minlength=12) == 5).all()
    for cluster in range(12):
        assert len(np.unique(x[result.labels == cluster], axis=0)) == 1


def test_fewer_distinct_points_than_clusters_is_an_error():
    x = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # 3 distinct points, 12 rows
    labels = np.repeat([0, 1, 2], 4)
    centroids = np.vstack([np.eye(3), np.full((2, 3), 9.0)]).astype(np.float32)
    with pytest.raises(UserError, match="only 3 distinct points; use at most 3 clusters"):
        fill_empty_clusters(x, centroids, labels, np.random.default_rng(0))


# ---------------------------------------------------------------- uniform sampling over classes


def test_uniform_sampling_over_pseudo_classes():
    # class sizes 100, 5, 31 under non-contiguous ids (class 2 is empty), N = 136
    labels = torch.tensor([0] * 100 + [1] * 5 + [3] * 31)[torch.randperm(136)]
    order = uniform_over_classes(labels, torch.Generator().manual_seed(0))
    assert order.shape == (136,) and order.dtype == torch.long
    counts = torch.bincount(labels[order], minlength=4)
    assert counts[2] == 0 and sorted(counts[[0, 1, 3]].tolist()) == [45, 45, 46]
    # the small class repeats every member 9 times; the large one is subsampled, no repeats
    small = torch.bincount(order[labels[order] == 1], minlength=136)
    assert set(small[labels == 1].tolist()) <= {9, 10}
    large = order[labels[order] == 0]
    assert len(torch.unique(large)) == len(large)

    again = uniform_over_classes(labels, torch.Generator().manual_seed(0))
    other = uniform_over_classes(labels, torch.Generator().manual_seed(1))
    assert torch.equal(order, again) and not torch.equal(order, other)


# ------------------------------------------------------------------------------------ Sobel


def test_sobel_layer_matches_a_hand_computed_convolution():
    images = torch.rand(2, 3, 5, 6)
    out = SobelFilter()(images)
    gray = np.pad(images.mean(dim=1).numpy(), ((0, 0), (1, 1), (1, 1)))
    g_x = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    g_y = g_x.T
    expected = np.zeros((2, 2, 5, 6))
    for b in range(2):
        for i in range(5):
            for j in range(6):
                window = gray[b, i : i + 3, j : j + 3]
                expected[b, 0, i, j] = (window * g_x).sum()
                expected[b, 1, i, j] = (window * g_y).sum()
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    assert list(SobelFilter().parameters()) == [] and "kernels" not in SobelFilter().state_dict()


def test_sobel_recipe_feeds_a_two_channel_backbone():
    stage, dataset = build(sobel=True)
    method = stage.method
    assert method.backbone.net.conv1.in_channels == 2
    method.eval()
    with torch.no_grad():
        features = method.features({"image": dataset.images[:4]})
    assert features.shape == (4, method.backbone.feature_dim)


def test_training_view_is_crop_and_flip_without_colour_changes():
    stage, dataset = build()
    view, evaluate = stage.method.view, stage.method.eval_transform
    crop = view[1]
    assert crop.scale == (0.5, 1.0) and crop.flip_p == 0.0 and len(view) == 3  # digits: no flips
    assert torch.equal(view[-1].mean, evaluate[-1].mean) and view[-1] is not evaluate[-1]
    assert build(flip=True)[0].method.view[1].flip_p == 0.5
    # a full-image crop, unflipped, is the eval view
    crop.scale, crop.ratio, crop.flip_p = (1.0, 1.0), (1.0, 1.0), 0.0
    images = dataset.images[:8]
    torch.testing.assert_close(view(images), evaluate(images))


# -------------------------------------------------------------------------- the method itself


@pytest.fixture(scope="module")
def trained():
    """One epoch's pseudo-labels, then 40 SGD steps on them (the recipe's optimiser)."""
    torch.manual_seed(0)
    stage, dataset = build()
    method = stage.method
    optimizer = method.configure_optimizer()
    ctx = context(dataset)
    logs = new_epoch(method, ctx)
    losses = sgd_steps(method, optimizer, dataset, method.sample_order(ctx), 40)
    return method, dataset, optimizer, logs, losses


def sgd_steps(method, optimizer, dataset, order, steps):
    """``steps`` optimiser steps on consecutive batches of 64 of ``order``; their losses."""
    losses = []
    for step in range(steps):
        start = (step * 64) % (len(order) - 64)
        index = order[start : start + 64]
        loss = method.training_step({"image": dataset.images[index], "index": index})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_loss_falls_within_an_epochs_pseudo_labels(trained):
    method, _, _, _, losses = trained
    assert all(np.isfinite(losses))
    assert losses[0] == pytest.approx(np.log(method.num_pseudo_classes), rel=0.05)
    # over seeds 0-3 the last-5 mean is 23% to 29% below the first-5 mean
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])


def test_pseudo_labels_are_the_reclustering_of_whitened_features(trained):
    method, dataset, _, logs, _ = trained
    assert logs == {"empty_clusters_reseeded": 0.0}  # no previous epoch to compare with
    ctx = context(dataset, epoch=5)
    method.eval()
    with torch.no_grad():
        features = ctx.embed(method.raw_features)
    expected = kmeans_without_empty_clusters(
        pca_whiten(features, 16).numpy(), 20, seed=epoch_seed(0, 5)
    )
    previous = method.pseudo_labels.clone()
    logs = new_epoch(method, ctx)
    np.testing.assert_array_equal(method.pseudo_labels.numpy(), expected.labels)
    assert logs["empty_clusters_reseeded"] == expected.reseeded
    assert logs["nmi_previous_epoch"] == pytest.approx(
        normalized_mutual_info_score(previous.numpy(), expected.labels)
    )
    assert len(torch.unique(method.pseudo_labels)) == 20


def test_head_is_reinitialised_and_its_optimiser_state_dropped(trained):
    method, dataset, optimizer, _, _ = trained
    sgd_steps(method, optimizer, dataset, torch.arange(len(dataset)), 2)
    head = method.head
    backbone_params = [p for p in method.backbone.parameters() if p.requires_grad]
    assert all("momentum_buffer" in optimizer.state[p] for p in (head.weight, head.bias))
    before = {id(p): optimizer.state[p]["momentum_buffer"].clone() for p in backbone_params}

    new_epoch(method, context(dataset, epoch=7))
    generator = torch.Generator().manual_seed(epoch_seed(0, 7))
    expected = torch.empty_like(head.weight).normal_(0.0, HEAD_INIT_STD, generator=generator)
    torch.testing.assert_close(head.weight.detach(), expected)
    assert head.weight.std().item() == pytest.approx(HEAD_INIT_STD, rel=0.05)
    assert torch.equal(head.bias.detach(), torch.zeros_like(head.bias))
    assert head.weight not in optimizer.state and head.bias not in optimizer.state
    for p in backbone_params:  # the backbone keeps its momentum
        assert torch.equal(optimizer.state[p]["momentum_buffer"], before[id(p)])


def test_sample_order_is_uniform_and_depends_on_seed_and_epoch(trained):
    method, dataset, _, _, _ = trained
    n = len(dataset)
    order = method.sample_order(context(dataset, epoch=2))
    assert order.shape == (n,)
    counts = torch.bincount(method.pseudo_labels[order], minlength=20)
    assert counts.min() >= n // 20 and counts.max() <= n // 20 + 1
    assert torch.equal(order, method.sample_order(context(dataset, epoch=2)))
    assert not torch.equal(order, method.sample_order(context(dataset, epoch=3)))
    assert not torch.equal(order, method.sample_order(context(dataset, epoch=2, seed=1)))


def test_pseudo_labels_round_trip_through_a_checkpoint(trained, tmp_path):
    method, _, _, _, _ = trained
    torch.save(method.state_dict(), tmp_path / "method.pt")
    fresh, _ = build()
    assert fresh.method.pseudo_labels is None
    state = torch.load(tmp_path / "method.pt", map_location="cpu", weights_only=False)
    fresh.method.load_state_dict(state)
    assert torch.equal(fresh.method.pseudo_labels, method.pseudo_labels)
    torch.testing.assert_close(fresh.method.head.weight, method.head.weight)


def test_trainer_logs_reseeding_stability_and_the_monitor(tmp_path):
    torch.manual_seed(0)
    stage, dataset = build(epochs=2, eval_every=2)
    Trainer(TrainSettings(progress=False), RunLogger(tmp_path, enabled=True)).fit(
        stage, context(dataset), tmp_path / "stage.pt", stage_index=0, resume=None, run_config={}
    )
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [line for line in lines if "epoch" in line]
    assert [line["epoch"] for line in epochs] == [1, 2]
    assert "nmi_previous_epoch" not in epochs[0] and 0 <= epochs[1]["nmi_previous_epoch"] <= 1
    assert all(line["empty_clusters_reseeded"] >= 0 for line in epochs)
    assert 0 < epochs[1]["acc"] <= 1 and epochs[1]["clusters_used"] == 10
    assert any("pseudo_label_accuracy" in line for line in lines)


def test_the_head_gets_plain_sgd_and_the_rest_momentum_as_the_public_code():
    from cluster_ssl.config import build_config
    from recipes import deepcluster as recipe

    for preset in ("cifar10", "cifar100-20", "stl10", "imagenet10"):
        assert build_config(recipe.DeepClusterConfig, recipe.PRESETS[preset], {}).head_momentum == 0
    assert recipe.DeepClusterConfig().head_momentum == 0.0
    torch.manual_seed(0)
    stage, dataset = build(head_momentum=0.0)
    method = stage.method
    optimizer = method.configure_optimizer()
    body, head = optimizer.param_groups
    assert body["momentum"] == 0.9 and head["momentum"] == 0.0
    assert head["lr"] == body["lr"] and head["weight_decay"] == body["weight_decay"]
    assert set(map(id, head["params"])) == set(map(id, method.head.parameters()))
    assert not set(map(id, body["params"])) & set(map(id, head["params"]))
    new_epoch(method, context(dataset))
    order = method.sample_order(context(dataset))
    losses = sgd_steps(method, optimizer, dataset, order, 3)
    # one more step by hand: the head moves by -lr (grad + wd w), with no momentum
    index = order[:64]
    loss = method.training_step({"image": dataset.images[index], "index": index})["loss"]
    optimizer.zero_grad()
    loss.backward()
    w, grad = method.head.weight.detach().clone(), method.head.weight.grad.clone()
    optimizer.step()
    expected = w - head["lr"] * (grad + head["weight_decay"] * w)
    torch.testing.assert_close(method.head.weight.detach(), expected)
    assert "momentum_buffer" not in optimizer.state.get(method.head.weight, {}) or (
        optimizer.state[method.head.weight]["momentum_buffer"] is None
    )
    assert all(np.isfinite(losses))
    # the old choice, the head in the momentum group, stays available
    old = build(head_momentum=0.9)[0].method.configure_optimizer()
    assert [group["momentum"] for group in old.param_groups] == [0.9, 0.9]


@pytest.mark.parametrize("head_momentum", [0.0, 0.9])
def test_a_run_resumed_after_its_first_epoch_ends_like_an_uninterrupted_one(
    tmp_path, monkeypatch, head_momentum
):
    saved = {}
    real_save = trainer_module.save_checkpoint

    def save_and_keep(state, path):
        real_save(state, path)
        saved[state["epoch"]] = load_checkpoint(path)

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_and_keep)

    def fit(resume):
        stage, dataset = build(epochs=2, head_momentum=head_momentum)
        trainer = Trainer(TrainSettings(progress=False), RunLogger(tmp_path, enabled=False))
        trainer.fit(
            stage,
            context(dataset),
            tmp_path / "stage.pt",
            stage_index=0,
            resume=resume,
            run_config={},
        )
        return stage.method

    torch.manual_seed(0)
    uninterrupted = fit(resume=None)
    after_first_epoch = saved[1]
    torch.manual_seed(123)  # a new process: other initial weights, other random state
    resumed = fit(resume=after_first_epoch)
    want, have = uninterrupted.state_dict(), resumed.state_dict()
    for key, value in want.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, have[key]), key
    assert torch.equal(uninterrupted.pseudo_labels, resumed.pseudo_labels)
    assert [g["momentum"] for g in saved[2]["optimizer"]["param_groups"]] == [0.9, head_momentum]


def test_predict_clusters_the_normalised_embedding_into_k_classes(trained):
    method, dataset, _, _, _ = trained
    method.eval()
    with torch.no_grad():
        prediction = method.predict(context(dataset))
    method.train()
    assert prediction.num_clusters == 10 and prediction.labels.shape == (len(dataset),)
    assert prediction.labels.max() < 10
    np.testing.assert_allclose(np.linalg.norm(prediction.embedding, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_pseudo_classes": 400}, r"num_pseudo_classes=400: .* the 359 training images"),
        ({"num_pseudo_classes": 0}, r"num_pseudo_classes=0"),
        ({"pca_dim": 0}, r"--set pca_dim=0: must be greater than 0"),
        ({"pca_dim": 129}, r"pca_dim=129 is impossible .* 128 features"),
        ({"kmeans_iterations": 0}, r"kmeans_iterations=0"),
        ({"crop_scale": 1.5}, r"crop_scale=1.5"),
    ],
)
def test_bad_settings_are_refused_before_training(overrides, message):
    with pytest.raises(UserError, match=message):
        build(**overrides)

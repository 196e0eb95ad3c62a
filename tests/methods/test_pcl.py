"""PCL: its losses, the negative-prototype rule, the concentration estimate and the E-step
against explicit loops and hand computations; the momentum encoder and the key queue; the
method as its recipe builds it (digits test split at 8 px) trained past its warm-up; its
extra state; and the clear errors for settings the data cannot hold."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cluster_ssl.cluster.prototypes import concentration, estimate_prototypes
from cluster_ssl.commands.prepare import prepare
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.trainer import Trainer, TrainSettings
from cluster_ssl.eval.metrics import cluster_accuracy
from cluster_ssl.losses.pcl import info_nce_with_queue, proto_nce, sample_negative_prototypes
from cluster_ssl.methods.base import StageContext
from cluster_ssl.models.momentum import KeyQueue, MomentumEncoder
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.state import load_state_strict

CPU = torch.device("cpu")
BATCH = 64
# the digits CPU preset on its 359 test images at 8 px, with prototypes and a queue that fit
TINY = {
    "split": "test",
    "eval_split": None,
    "image_size": 8,
    "batch_size": BATCH,
    "kmeans_restarts": 2,
    "warmup_epochs": 1,
    "num_prototypes": (10, 20),
    "queue_size": 128,
}


def unit(v: np.ndarray) -> np.ndarray:
    return v / math.sqrt(sum(float(x) ** 2 for x in v))


# --- InfoNCE with a queue, ProtoNCE ---------------------------------------------------------


def loop_info_nce(q: np.ndarray, k: np.ndarray, queue: np.ndarray, tau: float) -> float:
    total = 0.0
    for i in range(len(q)):
        qi, ki = unit(q[i]), unit(k[i])
        positive = math.exp(float(qi @ ki) / tau)
        negatives = sum(math.exp(float(qi @ row) / tau) for row in queue)
        total += -math.log(positive / (positive + negatives))
    return total / len(q)


def loop_proto_nce(q, positive, negatives, prototypes, phi) -> float:
    total = 0.0
    for i in range(len(q)):
        qi = unit(q[i])
        s = positive[i]
        numerator = math.exp(float(qi @ prototypes[s]) / phi[s])
        denominator = numerator + sum(
            math.exp(float(qi @ prototypes[j]) / phi[j]) for j in negatives[i]
        )
        total += -math.log(numerator / denominator)
    return total / len(q)


@pytest.mark.parametrize("tau", [0.2, 1.0])
def test_info_nce_with_queue_matches_loop(tau: float) -> None:
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    queue = np.stack([unit(row) for row in rng.standard_normal((7, 4))])
    queries = torch.tensor(q, requires_grad=True)
    keys = torch.tensor(k, requires_grad=True)
    loss = info_nce_with_queue(queries, keys, torch.tensor(queue), tau)
    assert loss.item() == pytest.approx(loop_info_nce(q, k, queue, tau), rel=1e-10)
    loss.backward()
    assert queries.grad is not None and queries.grad.abs().sum() > 0
    assert keys.grad is None  # keys are constants


def test_proto_nce_matches_loop() -> None:
    rng = np.random.default_rng(1)
    q = rng.standard_normal((4, 3))
    prototypes = np.stack([unit(row) for row in rng.standard_normal((6, 3))])
    phi = rng.uniform(0.1, 0.4, size=6)
    positive = np.array([0, 3, 3, 5])
    negatives = np.array([[1, 2], [0, 5], [4, 1], [2, 3]])
    queries = torch.tensor(q, requires_grad=True)
    loss = proto_nce(
        queries,
        torch.tensor(positive),
        torch.tensor(negatives),
        torch.tensor(prototypes),
        torch.tensor(phi),
    )
    expected = loop_proto_nce(q, positive, negatives, prototypes, phi)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    loss.backward()
    assert queries.grad.abs().sum() > 0


def test_losses_run_in_fp32_under_autocast() -> None:
    q = torch.randn(4, 8, dtype=torch.bfloat16)
    queue = F.normalize(torch.randn(6, 8), dim=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        instance = info_nce_with_queue(q, q.clone(), queue, 0.2)
        proto = proto_nce(
            q,
            torch.zeros(4, dtype=torch.long),
            torch.ones(4, 1, dtype=torch.long),
            queue,
            torch.full((6,), 0.2),
        )
    assert instance.dtype == torch.float32 and proto.dtype == torch.float32
    exact = info_nce_with_queue(q.float(), q.float(), queue, 0.2)
    assert instance.item() == pytest.approx(exact.item(), rel=1e-6)


def test_per_sample_negatives_exclude_only_the_own_positive_uniformly() -> None:
    k, r = 6, 3
    positive = torch.tensor([0, 2, 5, 2])
    generator = torch.Generator().manual_seed(0)
    counts = np.zeros((len(positive), k))
    for _ in range(3000):
        negatives = sample_negative_prototypes(positive, k, r, generator=generator)
        assert negatives.shape == (4, r) and negatives.dtype == torch.long
        for row, s in zip(negatives.tolist(), positive.tolist(), strict=True):
            assert s not in row and len(set(row)) == r and all(0 <= j < k for j in row)
        for i, row in enumerate(negatives.tolist()):
            counts[i, row] += 1
    # each other prototype is drawn with probability r / (k - 1) = 0.6
    for i, s in enumerate(positive.tolist()):
        others = np.delete(counts[i], s) / 3000
        np.testing.assert_allclose(others, r / (k - 1), atol=0.04)
        assert counts[i, s] == 0
    # asking for more than k - 1 gives every other prototype
    everything = sample_negative_prototypes(positive, k, 50, generator=generator)
    for row, s in zip(everything.tolist(), positive.tolist(), strict=True):
        assert sorted(row) == [j for j in range(k) if j != s]


def test_batch_negatives_are_shared_and_no_samples_positive() -> None:
    positive = torch.tensor([1, 4, 4, 7])
    generator = torch.Generator().manual_seed(0)
    negatives = sample_negative_prototypes(positive, 10, 3, sampling="batch", generator=generator)
    assert negatives.shape == (4, 3)
    assert (negatives == negatives[0]).all()
    assert not set(negatives[0].tolist()) & {1, 4, 7} and len(set(negatives[0].tolist())) == 3
    capped = sample_negative_prototypes(positive, 10, 100, sampling="batch", generator=generator)
    assert sorted(capped[0].tolist()) == [0, 2, 3, 5, 6, 8, 9]
    with pytest.raises(UserError, match="negative_sampling=per_sample"):
        sample_negative_prototypes(torch.tensor([0, 1, 2]), 3, 2, sampling="batch")


# --- concentration, E-step ---------------------------------------------------------------


def hand_percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = p / 100 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def test_concentration_matches_hand_computation() -> None:
    # clusters 0-3 have 3, 2, 4 and 2 members, cluster 4 one, cluster 5 none
    assignments = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4])
    distances = np.array([0.1, 0.2, 0.3, 0.5, 0.7, 0.2, 0.2, 0.4, 0.2, 0.05, 0.15, 0.9])
    tau = 0.2
    raw = []
    for c in range(4):
        members = [d for d, a in zip(distances, assignments, strict=True) if a == c]
        z = len(members)
        raw.append(sum(members) / (z * math.log(z + 10)))
    raw += [max(raw), max(raw)]  # one member and no member: the largest phi
    low, high = hand_percentile(raw, 10), hand_percentile(raw, 90)
    clipped = [min(max(value, low), high) for value in raw]
    expected = [tau * value / (sum(clipped) / len(clipped)) for value in clipped]

    phi = concentration(distances, assignments, 6, tau)
    assert phi.shape == (6,) and phi.dtype == np.float32
    np.testing.assert_allclose(phi, expected, rtol=1e-6)
    assert phi.mean() == pytest.approx(tau, rel=1e-6)


def test_concentration_edge_cases() -> None:
    # every cluster a singleton: no spread to measure, every phi is the temperature
    phi = concentration(np.zeros(4), np.arange(4), 4, 0.3)
    np.testing.assert_allclose(phi, 0.3)
    # members that coincide with their centroid never give phi = 0
    assignments = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    distances = np.array([0.0, 0.0, 0.2, 0.4, 0.3, 0.3, 0.1, 0.5, 0.6, 0.2])
    phi = concentration(distances, assignments, 5, 0.2)
    assert (phi > 0).all() and phi.mean() == pytest.approx(0.2, rel=1e-6)


def sphere_blobs(n_per: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three tight blobs of unit vectors around orthogonal directions in 8 dimensions."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per)
    x = np.eye(3, 8)[y] + 0.05 * rng.standard_normal((3 * n_per, 8))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def test_estep_recovers_blobs_at_their_granularity() -> None:
    x, y = sphere_blobs()
    coarse, fine = estimate_prototypes(torch.from_numpy(x), (3, 6), 0.2, seed=0)
    assert coarse.assignments.shape == (60,) and coarse.num_prototypes == 3
    assert cluster_accuracy(y, coarse.assignments) == 1.0
    np.testing.assert_allclose(np.linalg.norm(coarse.centroids, axis=1), 1.0, atol=1e-5)
    for c in range(3):  # each prototype points at its blob's mean direction
        members = x[coarse.assignments == c]
        direction = members.mean(axis=0) / np.linalg.norm(members.mean(axis=0))
        np.testing.assert_allclose(coarse.centroids[c], direction, atol=1e-4)
    assert coarse.concentration.mean() == pytest.approx(0.2, rel=1e-5)
    # the finer clustering splits the blobs but never mixes two
    assert fine.num_prototypes == 6
    for c in np.unique(fine.assignments):
        assert len(np.unique(y[fine.assignments == c])) == 1
    # phi is measured from the members' distances to the centroid before it is normalised
    means = np.stack([x[coarse.assignments == c].mean(axis=0) for c in range(3)])
    distances = np.linalg.norm(x - means[coarse.assignments], axis=1)
    np.testing.assert_allclose(
        coarse.concentration, concentration(distances, coarse.assignments, 3, 0.2), rtol=1e-4
    )
    # seeded: the same input gives the same clustering
    again = estimate_prototypes(x, (3,), 0.2, seed=0)[0]
    np.testing.assert_array_equal(again.assignments, coarse.assignments)
    np.testing.assert_array_equal(again.concentration, coarse.concentration)


def test_estep_rejects_more_prototypes_than_samples() -> None:
    x, _ = sphere_blobs(n_per=2)
    with pytest.raises(UserError, match="num_prototypes"):
        estimate_prototypes(x, (3, 7), 0.2)


# --- momentum encoder, key queue ----------------------------------------------------------


def test_momentum_encoder_is_an_ema_copy_outside_the_optimiser() -> None:
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    head = nn.Linear(4, 2)
    ema = MomentumEncoder(online, head, momentum=0.9)
    assert all(not p.requires_grad for p in ema.parameters())
    before = [p.clone() for p in ema.parameters()]
    with torch.no_grad():
        for p in [*online.parameters(), *head.parameters()]:
            p.add_(torch.randn_like(p))
    ema.update(online, head)
    for old, new, average in zip(
        before, [*online.parameters(), *head.parameters()], ema.parameters(), strict=True
    ):
        torch.testing.assert_close(average, 0.9 * old + 0.1 * new)
    x = torch.randn(5, 3)
    ema.eval()
    online.eval()
    manual = ema.encoder[1](ema.encoder[0](x))
    torch.testing.assert_close(ema(x), manual)
    assert not ema(x).requires_grad
    # the BatchNorm running statistics are the copy's own, not averaged
    torch.testing.assert_close(ema.encoder[0][1].running_mean, torch.zeros(4))


def test_key_queue_is_a_fifo_ring_buffer() -> None:
    queue = KeyQueue(5, 3, seed=0)
    np.testing.assert_allclose(queue.keys.norm(dim=1).numpy(), 1.0, atol=1e-6)
    initial = queue.keys.clone()
    first, second = torch.randn(3, 3), torch.randn(3, 3)
    queue.enqueue(first)
    assert int(queue.pointer) == 3
    torch.testing.assert_close(queue.keys[:3], F.normalize(first, dim=1))
    torch.testing.assert_close(queue.keys[3:], initial[3:])
    queue.enqueue(second)  # rows 3, 4, then wraps to row 0
    assert int(queue.pointer) == 1
    expected = torch.stack([second[2], first[1], first[2], second[0], second[1]])
    torch.testing.assert_close(queue.keys, F.normalize(expected, dim=1))
    many = torch.randn(7, 3)  # more than it holds: the newest five, oldest at the pointer
    queue.enqueue(many)
    assert int(queue.pointer) == (1 + 5) % 5
    torch.testing.assert_close(
        queue.keys, F.normalize(torch.stack([many[6], many[2], many[3], many[4], many[5]]), dim=1)
    )
    restored = KeyQueue(5, 3, seed=1)
    restored.load_state_dict(queue.state_dict())
    torch.testing.assert_close(restored.keys, queue.keys)
    assert int(restored.pointer) == int(queue.pointer)


def test_a_loss_on_the_queue_still_backpropagates_after_enqueue() -> None:
    queue = KeyQueue(4, 3)
    q = torch.randn(2, 3, requires_grad=True)
    loss = info_nce_with_queue(q, torch.randn(2, 3), queue.keys, 0.2)
    queue.enqueue(torch.randn(2, 3))
    loss.backward()
    assert q.grad is not None


# --- the method --------------------------------------------------------------------------


def build(**overrides):
    prepared = prepare(
        {
            "recipe": "pcl",
            "dataset": "digits",
            "data_root": None,
            "overrides": {**TINY, **overrides},
        }
    )
    return prepared.stages[0], prepared.dataset


def context(dataset, epoch: int = 0) -> StageContext:
    return StageContext(dataset, CPU, seed=0, num_workers=0, epoch=epoch)


def estep(method, dataset, epoch: int):
    method.eval()
    logs = method.on_epoch_start(context(dataset, epoch))
    method.train()
    return logs


@pytest.fixture(scope="module")
def trained():
    """10 InfoNCE-only steps, the E-step, then 50 steps with ProtoNCE (seed 0)."""
    torch.manual_seed(0)
    stage, dataset = build()
    method = stage.method
    optimizer = method.configure_optimizer()
    generator = torch.Generator().manual_seed(0)
    outputs = []
    method.train()
    for step in range(60):
        if step == 10:
            assert estep(method, dataset, epoch=0) == {}  # still the warm-up
            logs = estep(method, dataset, epoch=1)
        index = torch.randint(len(dataset), (BATCH,), generator=generator)
        out = method.training_step({"image": dataset.images[index], "index": index})
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        outputs.append({key: value.item() for key, value in out.items()})
    return method, dataset, outputs, logs


def test_optimiser_trains_the_query_encoder_only() -> None:
    stage, _ = build()
    method = stage.method
    groups = method.configure_optimizer().param_groups
    trained = {id(p) for group in groups for p in group["params"]}
    assert all(id(p) not in trained for p in method.key_encoder.parameters())
    online = [*method.backbone.parameters(), *method.head.parameters()]
    assert {id(p) for p in online} == trained
    assert method.queue.size == 128 and method.num_prototypes == (10, 20)


def test_shuffled_keys_return_to_their_samples(monkeypatch) -> None:
    torch.manual_seed(0)
    stage, dataset = build(bn_groups=8)
    method = stage.method
    method.eval()  # running statistics: grouping changes nothing, a wrong order everything
    images = method.eval_transform(dataset.images[:BATCH])
    monkeypatch.setattr(method, "augment", lambda pipeline, batch: (images, images))
    with torch.no_grad():
        queries = method.head(method.backbone(images))
    method.training_step({"image": dataset.images[:BATCH], "index": torch.arange(BATCH)})
    # at step 0 the key encoder equals the query encoder: each key is its own query
    torch.testing.assert_close(method.queue.keys[:BATCH], queries, atol=1e-5, rtol=1e-5)


def test_queries_are_normalised_within_their_group() -> None:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).train()
    stage, _ = build(bn_groups=4)
    x = torch.randn(16, 3)
    grouped = stage.method.in_groups(encoder, x)
    torch.testing.assert_close(grouped[4:8], encoder(x[4:8]))
    assert not torch.allclose(grouped[4:8], encoder(x)[4:8])
    assert stage.method.in_groups(encoder, x[:6]).shape == (6, 4)  # 3 groups of two


def test_loss_is_infonce_in_the_warmup_then_adds_protonce_and_falls(trained) -> None:
    method, dataset, outputs, logs = trained
    assert all(set(out) == {"loss", "instance"} for out in outputs[:10])
    assert all(set(out) == {"loss", "instance", "prototype"} for out in outputs[10:])
    for out in outputs[10:]:
        assert out["loss"] == pytest.approx(out["instance"] + out["prototype"], rel=1e-5)
    losses = [out["loss"] for out in outputs[10:]]
    assert all(np.isfinite(losses))
    early, late = np.mean(losses[:5]), np.mean(losses[-5:])
    assert late < 0.995 * early, (early, late)
    assert logs == {"prototypes_used_10": 10.0, "prototypes_used_20": 20.0}


def test_estep_clusters_the_momentum_encoder_features(trained) -> None:
    method, dataset, _, _ = trained
    estep(method, dataset, epoch=5)
    method.eval()
    features = context(dataset).embed(method.key_features)
    method.train()
    expected = estimate_prototypes(features, (10, 20), method.temperature, seed=0)
    for m, clustering in enumerate(expected):
        np.testing.assert_array_equal(method.assignments[m].numpy(), clustering.assignments)
        np.testing.assert_allclose(method.prototypes[m].numpy(), clustering.centroids, atol=1e-6)
        np.testing.assert_allclose(method.concentrations[m].numpy(), clustering.concentration)


def test_propos_estep_takes_cosine_kmeans_and_plain_mean_prototypes() -> None:
    torch.manual_seed(0)
    stage, dataset = build(estep_kmeans="propos")
    method = stage.method
    estep(method, dataset, epoch=1)
    method.eval()
    features = context(dataset).embed(method.key_features)
    expected = estimate_prototypes(
        features, (10, 20), method.temperature, seed=0, kmeans_style="propos"
    )
    for m, clustering in enumerate(expected):
        np.testing.assert_array_equal(method.assignments[m].numpy(), clustering.assignments)
        np.testing.assert_allclose(method.prototypes[m].numpy(), clustering.centroids, atol=1e-6)
        assert (method.prototypes[m].norm(dim=1) < 1.0 - 1e-4).any()  # means, not unit rows


def test_extra_state_round_trips(trained) -> None:
    method, dataset, _, _ = trained
    torch.manual_seed(1)
    fresh = build()[0].method
    assert fresh.assignments == []
    load_state_strict(fresh, method.state_dict(), "pcl")
    for name in ("assignments", "prototypes", "concentrations"):
        for saved, loaded in zip(getattr(method, name), getattr(fresh, name), strict=True):
            assert torch.equal(saved, loaded)
    assert torch.equal(fresh.queue.keys, method.queue.keys)
    assert torch.equal(fresh.queue.pointer, method.queue.pointer)
    for a, b in zip(fresh.key_encoder.parameters(), method.key_encoder.parameters(), strict=True):
        assert torch.equal(a, b)


def test_predict_clusters_the_backbone_embedding(trained) -> None:
    method, dataset, _, _ = trained
    method.eval()
    prediction = method.predict(context(dataset))
    method.train()
    assert prediction.num_clusters == 10 and prediction.labels.shape == (len(dataset),)
    assert prediction.embedding.shape == (len(dataset), method.backbone.feature_dim)
    np.testing.assert_allclose(np.linalg.norm(prediction.embedding, axis=1), 1.0, atol=1e-5)


def test_trainer_runs_the_estep_after_the_warmup(tmp_path) -> None:
    torch.manual_seed(0)
    stage, dataset = build(epochs=2, eval_every=2)
    logger = RunLogger(tmp_path, enabled=True)
    result = Trainer(TrainSettings(progress=False, log_every=1), logger).fit(
        stage, context(dataset), tmp_path / "stage.pt", stage_index=0, resume=None, run_config={}
    )
    assert result["steps"] == 2 * (len(dataset) // BATCH)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [line for line in lines if "epoch" in line]
    assert "prototypes_used_10" not in epochs[0] and epochs[1]["prototypes_used_20"] == 20.0
    steps = [line for line in lines if "instance" in line]
    per_epoch = len(dataset) // BATCH
    assert all("prototype" not in line for line in steps[:per_epoch])
    assert all("prototype" in line for line in steps[per_epoch:])
    assert 0.0 < epochs[1]["acc"] <= 1.0


def test_settings_the_data_cannot_hold_are_clear_errors() -> None:
    with pytest.raises(UserError, match=r"queue_size=400 .* 359 training images.*--set queue_size"):
        build(queue_size=400)
    with pytest.raises(
        UserError, match=r"num_prototypes \[400\] exceed the 359.*--set num_prototypes"
    ):
        build(num_prototypes=(10, 400))
    with pytest.raises(UserError, match="negative_sampling"):
        build(negative_sampling="shared")
    with pytest.raises(UserError, match="estep_kmeans must be one of pcl, propos"):
        build(estep_kmeans="faiss")
    with pytest.raises(UserError, match="num_prototypes"):
        build(num_prototypes=(1,))
    with pytest.raises(UserError, match=r"encoder_momentum=1.0: must be below 1"):
        build(encoder_momentum=1.0)


def test_symmetric_loss_sums_both_directions_then_queues_both_keys(monkeypatch) -> None:
    """ProPos's PCLWrapper.forward: L(q(x1), k(x2)) + L(q(x2), k(x1)) against the queue as
    the step found it, then the keys of x2 and of x1 enter the queue in that order."""
    torch.manual_seed(0)
    stage, dataset = build(symmetric=True, negative_prototypes=512)
    method = stage.method
    estep(method, dataset, epoch=1)
    method.eval()  # running statistics: the BatchNorm grouping changes nothing
    x1 = method.eval_transform(dataset.images[:BATCH])
    x2 = x1.flip(3)
    monkeypatch.setattr(method, "augment", lambda pipeline, batch: (x1, x2))
    queue = method.queue.keys.clone()
    index = torch.arange(BATCH)
    with torch.no_grad():
        # at step 0 the key encoder equals the query encoder (the update keeps the copy)
        e1, e2 = (F.normalize(method.head(method.backbone(x)), dim=1) for x in (x1, x2))
        out = method.training_step({"image": dataset.images[:BATCH], "index": index})
        tau = method.temperature
        instance = info_nce_with_queue(e1, e2, queue, tau) + info_nce_with_queue(e2, e1, queue, tau)
        # r = 512 covers every other prototype, so the negatives are drawn deterministically
        prototype = method.prototype_loss(e1, index) + method.prototype_loss(e2, index)
    torch.testing.assert_close(out["instance"], instance, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["prototype"], prototype, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["loss"], instance + method.prototype_weight * prototype)
    torch.testing.assert_close(method.queue.keys, torch.cat([e2, e1]), atol=1e-5, rtol=1e-5)


def test_asymmetric_step_queues_one_batch_of_keys() -> None:
    torch.manual_seed(0)
    stage, dataset = build()
    method = stage.method
    method.training_step({"image": dataset.images[:BATCH], "index": torch.arange(BATCH)})
    assert int(method.queue.pointer) == BATCH


def test_key_projection_scores_the_momentum_encoders_embedding(trained) -> None:
    method, dataset, _, _ = trained
    method.score_embedding = "key_projection"
    try:
        method.eval()
        prediction = method.predict(context(dataset))
        keys = context(dataset).embed(method.key_features).numpy()
    finally:
        method.score_embedding = "backbone"
        method.train()
    np.testing.assert_allclose(prediction.embedding, keys, atol=1e-6)
    assert prediction.embedding.shape == (len(dataset), method.queue.keys.shape[1])
    with pytest.raises(UserError, match="score_embedding"):
        build(score_embedding="projection")

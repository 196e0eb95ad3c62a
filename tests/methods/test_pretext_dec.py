"""SimCLR + DEC (``recipes/simclr_dec.py``): DEC's clustering layer over a pretext's backbone.
The centres start from k-means on the pretext's embedding, the KL loss falls as backbone and
centres are fine-tuned, and with ``gamma`` the pretext's own loss is kept beside it."""

import numpy as np
import pytest
import torch

from cluster_ssl.cluster.kmeans import kmeans
from cluster_ssl.commands.prepare import prepare
from cluster_ssl.engine.trainer import compiled_module
from cluster_ssl.losses.contrastive import nt_xent
from cluster_ssl.methods.base import StageContext
from cluster_ssl.methods.pretext_dec import PretextDEC

CPU = torch.device("cpu")
SMALL = {
    "split": "test",
    "eval_split": None,
    "image_size": 8,
    "kmeans_restarts": 2,
    "update_interval": 5,
}


def build(**overrides):
    torch.manual_seed(0)
    record = {"recipe": "simclr_dec", "dataset": "digits", "data_root": None}
    prepared = prepare({**record, "overrides": {**SMALL, **overrides}})
    (pretext, dec), dataset = prepared.stages, prepared.dataset
    ctx = StageContext(dataset, CPU, seed=0, num_workers=0)
    return pretext.method, dec.method, ctx


def test_the_recipe_is_simclr_then_dec_on_its_backbone():
    pretext, dec, _ = build()
    assert isinstance(dec, PretextDEC) and dec.pretext is pretext
    assert dec.clustering.centres.shape == (10, pretext.backbone.feature_dim)
    backbone = {id(p) for p in pretext.backbone.parameters()}
    head = {id(p) for p in pretext.head.parameters()}
    trained = {id(p) for p in dec.trainable()}
    assert backbone < trained and not head & trained  # DEC alone: no pretext head
    assert compiled_module(dec) is pretext.backbone  # what --compile and --init-from take
    _, kept, _ = build(gamma=0.1)
    assert {id(p) for p in kept.pretext.head.parameters()} < {id(p) for p in kept.trainable()}


def test_centres_start_from_kmeans_on_the_pretext_embedding():
    pretext, dec, ctx = build()
    dec.eval()
    dec.on_fit_start(ctx)
    z = ctx.embed(pretext.features).numpy()
    expected = kmeans(z, 10, n_init=2, seed=0)
    np.testing.assert_allclose(dec.clustering.centres.detach().numpy(), expected.centroids)
    np.testing.assert_array_equal(dec.last_labels.numpy(), expected.labels)


@pytest.mark.parametrize("gamma", [None, 0.1])
def test_kl_falls_with_p_held_fixed_and_gamma_keeps_the_pretext_loss(gamma):
    _, dec, ctx = build(gamma=gamma)
    dec.eval()
    dec.on_fit_start(ctx)
    dec.on_step_start(ctx)  # P over the whole split, then held fixed
    optimizer = dec.configure_optimizer()
    dec.train()
    index = torch.arange(64)
    batch = {"image": ctx.dataset.images[index], "index": index}
    kls = []
    for _ in range(15):
        torch.manual_seed(1)  # the same views every step
        out = dec.training_step(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        kls.append(out["kl"].item())
    assert kls[-1] < kls[0]
    if gamma is None:
        assert "pretext_loss" not in out
        assert out["loss"].item() == pytest.approx(out["kl"].item())
    else:
        torch.manual_seed(1)
        view_a, view_b = dec.pretext.augment(dec.pretext.views, batch["image"])
        z = dec.pretext.head(dec.pretext.backbone(torch.cat([view_a, view_b])))
        expected = nt_xent(*z.chunk(2), dec.pretext.temperature)
        torch.manual_seed(1)
        out = dec.training_step(batch)
        assert out["pretext_loss"].item() == pytest.approx(expected.item(), rel=1e-4)
        total = out["pretext_loss"] + gamma * out["kl"]
        assert out["loss"].item() == pytest.approx(total.item(), rel=1e-5)

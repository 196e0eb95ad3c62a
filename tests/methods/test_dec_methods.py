"""DEC / IDEC / DCEC stages: losses fall, P is refreshed on the whole dataset only every
``update_interval`` steps, and the tolerance stops the stage."""

import copy

import numpy as np
import pytest
import torch

from cluster_ssl.commands.train import predict_method
from cluster_ssl.data.registry import build_dataset
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.trainer import Stage, Trainer, TrainSettings
from cluster_ssl.methods.autoencoder import AutoencoderPretraining, input_pixels
from cluster_ssl.methods.base import StageContext
from cluster_ssl.methods.dec import DEC
from cluster_ssl.methods.optim import OptimizerSpec
from cluster_ssl.models.autoencoders import ConvAutoencoder, MLPAutoencoder
from cluster_ssl.models.clustering_layer import ClusteringLayer
from cluster_ssl.runtime.distributed import DistInfo


@pytest.fixture(scope="module")
def digits():
    return build_dataset("digits", split="test")  # 359 images keep this fast


def fit(stage, dataset, tmp_path):
    trainer = Trainer(TrainSettings(progress=False), RunLogger(tmp_path, enabled=False))
    ctx = StageContext(dataset, torch.device("cpu"), seed=0)
    result = trainer.fit(
        stage, ctx, tmp_path / "stage.pt", stage_index=0, resume=None, run_config={}
    )
    return result, ctx


def reconstruction_error(autoencoder, dataset):
    x = input_pixels(dataset.images)
    with torch.no_grad():
        _, r = autoencoder(x)
    return torch.nn.functional.mse_loss(r, x.reshape(r.shape)).item()


@pytest.mark.parametrize(("kind", "dropout"), [("mlp", 0.0), ("conv", 0.0), ("mlp", 0.2)])
def test_pretraining_lowers_reconstruction_error(digits, tmp_path, kind, dropout):
    torch.manual_seed(0)
    ae = MLPAutoencoder(64, (32, 32, 64), 10) if kind == "mlp" else ConvAutoencoder((1, 8, 8))
    before = reconstruction_error(ae, digits)
    stage = Stage(
        "pretrain",
        AutoencoderPretraining(ae, OptimizerSpec("adam", 1e-3), 10, 2, dropout=dropout),
        epochs=5,
        batch_size=32,
    )
    fit(stage, digits, tmp_path)
    assert reconstruction_error(ae, digits) < 0.7 * before


def make_clustering(gamma, update_interval, tol, ae=None, lr=0.01):
    torch.manual_seed(0)
    ae = ae or MLPAutoencoder(64, (32, 32, 64), 10)
    return DEC(
        ae,
        ClusteringLayer(10, 10),
        OptimizerSpec("sgd", lr, 0.9),
        gamma=gamma,
        update_interval=update_interval,
        tol=tol,
        kmeans_restarts=2,
    )


@pytest.mark.parametrize(("kind", "expected"), [("mlp", 512), ("conv", 64)])
def test_every_pass_over_the_dataset_takes_the_batch_of_the_stages_network(
    digits, tmp_path, pass_batches, kind, expected
):
    # on a CPU: 64 through convolutions (activations stay in cache), 512 through an MLP
    ae = MLPAutoencoder(64, (32, 32, 64), 10) if kind == "mlp" else ConvAutoencoder((1, 8, 8))
    method = make_clustering(None, update_interval=4, tol=0.0, ae=ae)
    stage = Stage("cluster", method, epochs=1, batch_size=32, max_steps=5)
    fit(stage, digits, tmp_path)  # the k-means initialisation, then P at steps 0 and 4
    predict_method(stage, digits, torch.device("cpu"), DistInfo(), 0, training_data=True)
    assert pass_batches == [expected] * 4


@pytest.mark.parametrize("gamma", [None, 0.1])
def test_p_is_refreshed_over_the_whole_dataset_every_update_interval(
    digits, tmp_path, gamma, monkeypatch
):
    method = make_clustering(gamma, update_interval=4, tol=0.0)
    refreshes = []
    original = method.soft_assignments

    def counting(ctx):
        q = original(ctx)
        refreshes.append((ctx.step, q.shape[0]))
        return q

    monkeypatch.setattr(method, "soft_assignments", counting)
    result, _ = fit(
        Stage("cluster", method, epochs=100, batch_size=32, max_steps=10, drop_last=False),
        digits,
        tmp_path,
    )
    assert result["steps"] == 10
    assert refreshes == [(0, len(digits)), (4, len(digits)), (8, len(digits))]
    assert method.target.shape == (len(digits), 10)


@pytest.fixture(scope="module")
def pretrained_ae(digits, tmp_path_factory):
    torch.manual_seed(0)
    ae = MLPAutoencoder(64, (32, 32, 64), 10)
    stage = Stage(
        "pretrain",
        AutoencoderPretraining(ae, OptimizerSpec("adam", 1e-3), 10, 2),
        epochs=10,
        batch_size=32,
    )
    fit(stage, digits, tmp_path_factory.mktemp("pretrain"))
    return ae


@pytest.mark.parametrize("gamma", [None, 1.0])
def test_clustering_loss_falls_with_p_held_fixed(digits, tmp_path, pretrained_ae, gamma):
    method = make_clustering(gamma, update_interval=1000, tol=0.0, ae=copy.deepcopy(pretrained_ae))
    fit(Stage("cluster", method, epochs=1, batch_size=32, max_steps=1), digits, tmp_path)
    everything = {"image": digits.images, "index": torch.arange(len(digits))}

    def full_loss():
        with torch.no_grad():
            parts = method.training_step(everything)
        return parts["loss"].item(), parts["kl"].item()

    before, kl_before = full_loss()
    optimizer = method.configure_optimizer()
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        index = torch.randint(len(digits), (64,), generator=generator)
        loss = method.training_step({"image": digits.images[index], "index": index})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after, kl_after = full_loss()
    assert kl_before > 1e-3
    assert after < before and kl_after < 0.9 * kl_before


def test_tolerance_stops_the_stage_and_says_why(digits, tmp_path):
    method = make_clustering(0.1, update_interval=3, tol=1.0)  # any change is below 100%
    result, _ = fit(
        Stage("cluster", method, epochs=100, batch_size=32, max_steps=1000, drop_last=False),
        digits,
        tmp_path,
    )
    assert result["steps"] == 3
    assert "below tol=1.0" in result["stop_reason"]
    saved = torch.load(tmp_path / "stage.pt", weights_only=False)
    assert saved["stop_reason"] == result["stop_reason"]


def test_centres_start_from_kmeans_on_the_embedding(digits, tmp_path):
    method = make_clustering(None, update_interval=100, tol=0.0)
    fit(Stage("cluster", method, epochs=1, batch_size=32, max_steps=1), digits, tmp_path)
    centres = method.clustering.centres.detach().numpy()
    with torch.no_grad():
        z = method.autoencoder.encode(input_pixels(digits.images)).numpy()
    # every centre lies inside the cloud of embeddings (k-means means, not random init)
    lo, hi = z.min(axis=0) - 1e-3, z.max(axis=0) + 1e-3
    assert np.all((centres >= lo) & (centres <= hi))


# --- the pixel range the autoencoder sees -------------------------------------------------


@pytest.mark.parametrize("pixel_range", [(0.0, 1.0), (-0.5, 0.5), (-1.0, 1.0), (0.0, 5.1)])
def test_input_pixels_map_0_255_linearly_onto_the_range(pixel_range):
    images = torch.tensor([[0, 51, 128, 255]], dtype=torch.uint8)
    low, high = pixel_range
    expected = torch.tensor([[low + (high - low) * v / 255 for v in (0, 51, 128, 255)]])
    torch.testing.assert_close(input_pixels(images, pixel_range), expected)
    features = torch.tensor([[3.0, -7.0]], dtype=torch.float64)  # estimator arrays: as given
    assert torch.equal(input_pixels(features, pixel_range), features.float())


def test_unit_range_is_a_plain_division():
    """The default keeps every recorded run's inputs bit for bit."""
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(input_pixels(images), images.float() / 255.0)


class Recorder(torch.nn.Module):
    """An autoencoder that keeps the inputs it is given."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def encode(self, x):
        self.seen.append(x.detach().clone())
        return self.inner.encode(x)

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.inner(x)


def test_both_stages_feed_the_autoencoder_the_range(digits, tmp_path):
    ae = Recorder(MLPAutoencoder(64, (16,), 4))
    pixel_range = (-0.5, 0.5)
    pretrain = AutoencoderPretraining(
        ae, OptimizerSpec("adam", 1e-3), 10, 1, pixel_range=pixel_range
    )
    ctx = StageContext(digits, torch.device("cpu"), seed=0)
    batch = {"image": digits.images[:8], "index": torch.arange(8)}
    pretrain.training_step(batch)
    pretrain.predict(ctx)
    cluster = DEC(
        ae,
        ClusteringLayer(10, 4),
        OptimizerSpec("sgd", 0.01),
        gamma=0.1,
        update_interval=10,
        tol=0.0,
        pixel_range=pixel_range,
    )
    cluster.encode(batch)
    cluster.auxiliary_loss(batch)
    seen = torch.cat([x.flatten() for x in ae.seen])
    assert seen.min() >= -0.5 and seen.max() <= 0.5 and seen.min() < 0 < seen.max()
    torch.testing.assert_close(ae.seen[0], input_pixels(digits.images[:8]) - 0.5)

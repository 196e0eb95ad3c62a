"""Every method hands k-means the embedding as a tensor on the run's device, so that a
GPU's features are clustered on the GPU (the torch backend; faiss-cpu cannot use it) and a
CPU's by faiss exactly as before (the same float32 values reach it)."""

import numpy as np
import pytest
import torch

from cluster_ssl.cluster import reseed
from cluster_ssl.cluster.kmeans import kmeans as real_kmeans
from cluster_ssl.commands.prepare import prepare
from cluster_ssl.methods import autoencoder, contrastive, dec
from cluster_ssl.methods.base import StageContext

CPU = torch.device("cpu")


@pytest.fixture
def received(monkeypatch):
    """What each k-means call was given, the real k-means still running."""
    calls = []

    def recording(x, *args, **kwargs):
        calls.append(x)
        return real_kmeans(x, *args, **kwargs)

    for module in (autoencoder, contrastive, dec, reseed):
        monkeypatch.setattr(module, "kmeans", recording)
    return calls


def stages(recipe, **overrides):
    tiny = {"split": "test", "eval_split": None, "image_size": 8, "kmeans_restarts": 1}
    prepared = prepare(
        {
            "recipe": recipe,
            "dataset": "digits",
            "data_root": None,
            "overrides": {**tiny, **overrides},
        }
    )
    ctx = StageContext(prepared.dataset, CPU, seed=0, num_workers=0)
    return prepared.stages, ctx


def assert_device_tensors(calls):
    assert calls and all(isinstance(x, torch.Tensor) and x.device == CPU for x in calls)


def test_embedding_methods_cluster_the_tensor(received):
    (stage,), ctx = stages("simclr")
    prediction = stage.method.predict(ctx)
    assert_device_tensors(received)
    assert isinstance(prediction.embedding, np.ndarray)  # what reports and files take
    assert np.array_equal(
        prediction.labels,
        real_kmeans(received[0].numpy(), 10, n_init=1, seed=0).labels,
    )


def test_the_dec_family_clusters_the_tensor(received):
    (pretrain, clustering), ctx = stages("dec")
    pretrain.method.eval()
    pretrain.method.predict(ctx)
    clustering.method.on_fit_start(ctx)
    assert_device_tensors(received)
    assert len(received) == 2


def test_deepcluster_clusters_the_whitened_tensor(received):
    (stage,), ctx = stages("deepcluster", pca_dim=8)
    stage.method.eval()
    stage.method.on_epoch_start(ctx)
    assert_device_tensors(received)
    assert received[0].shape == (len(ctx.dataset), 8)

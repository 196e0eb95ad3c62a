"""DEC's and IDEC's paper presets build the optimisers and weights of the authors' code.

DEC's follow the Keras reimplementation (XifengGuo/DEC-keras): on MNIST and Fashion-MNIST
the autoencoder pretrains with SGD lr 1, momentum 0.9, from U(+-1/sqrt(fan_in)) weights; on
USPS with Adam from Glorot-uniform weights for 50 epochs. IDEC (XifengGuo/IDEC) starts from
DEC's pretrained autoencoder, so it pretrains the same way, and clusters with Adam on MNIST
(and Fashion-MNIST) and SGD lr 0.1, momentum 0.99 on USPS. DCEC (XifengGuo/DCEC) uses Adam in
both stages, 200 pretraining epochs, and refreshes P every 140 steps on every dataset.
"""

import numpy as np
import pytest
import torch

from cluster_ssl.config import build_config
from cluster_ssl.data.base import TensorImageDataset
from cluster_ssl.runtime.errors import UserError
from recipes import RECIPES

SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "usps": (1, 16, 16)}


def stages(recipe: str, dataset: str):
    """The recipe's stages on a stand-in dataset with the real one's image shape."""
    spec = RECIPES.get(recipe)
    images = torch.zeros(20, *SHAPES[dataset], dtype=torch.uint8)
    data = TensorImageDataset(dataset, images, labels=np.arange(20) % 10)
    torch.manual_seed(0)
    return spec.build(build_config(spec.config, spec.preset(dataset), {}), data, 10)


def optimizer_of(stage) -> tuple[type, dict]:
    optimizer = stage.method.configure_optimizer()
    return type(optimizer), optimizer.defaults


def first_layer(stage) -> torch.nn.Linear:
    return stage.method.autoencoder.encoder[0]


@pytest.mark.parametrize("recipe", ["dec", "idec"])
@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_pretraining_as_keras_dec_on_mnist_and_fashion_mnist(recipe, dataset):
    pretrain, cluster = stages(recipe, dataset)
    kind, defaults = optimizer_of(pretrain)
    assert kind is torch.optim.SGD and defaults["lr"] == 1.0 and defaults["momentum"] == 0.9
    assert pretrain.epochs == 300
    weights = first_layer(pretrain).weight
    assert 0.9 / np.sqrt(784) < weights.abs().max() <= 1 / np.sqrt(784)
    assert cluster.method.update_interval == 140


@pytest.mark.parametrize("recipe", ["dec", "idec"])
def test_pretraining_as_keras_dec_on_usps(recipe):
    pretrain, cluster = stages(recipe, "usps")
    kind, defaults = optimizer_of(pretrain)
    assert kind is torch.optim.Adam and defaults["lr"] == 1e-3
    assert pretrain.epochs == 50
    glorot = np.sqrt(6 / (256 + 500))
    assert 0.9 * glorot < first_layer(pretrain).weight.abs().max() <= glorot
    assert cluster.method.update_interval == 30


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "usps"])
def test_dec_clusters_with_sgd(dataset):
    _, cluster = stages("dec", dataset)
    kind, defaults = optimizer_of(cluster)
    assert kind is torch.optim.SGD and defaults["lr"] == 0.01 and defaults["momentum"] == 0.9
    assert cluster.method.gamma is None  # the decoder is dropped


@pytest.mark.parametrize(
    ("dataset", "optimizer", "lr"),
    [
        ("mnist", torch.optim.Adam, 1e-3),
        ("fashion-mnist", torch.optim.Adam, 1e-3),
        ("usps", torch.optim.SGD, 0.1),
    ],
)
def test_idec_clusters_with_the_authors_optimiser(dataset, optimizer, lr):
    _, cluster = stages("idec", dataset)
    kind, defaults = optimizer_of(cluster)
    assert kind is optimizer and defaults["lr"] == lr
    if optimizer is torch.optim.SGD:
        assert defaults["momentum"] == 0.99
    assert cluster.method.gamma == 0.1


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "usps"])
def test_dcec_as_the_authors_code(dataset):
    pretrain, cluster = stages("dcec", dataset)
    for stage in (pretrain, cluster):
        kind, defaults = optimizer_of(stage)
        assert kind is torch.optim.Adam and defaults["lr"] == 1e-3
    assert pretrain.epochs == 200
    assert cluster.method.update_interval == 140
    assert cluster.method.gamma == 0.1


def test_unknown_weight_init_is_refused_with_the_choices():
    spec = RECIPES.get("dec")
    with pytest.raises(UserError, match="--set weight_init=he: unknown; use one of fan_in"):
        build_config(spec.config, {}, {"weight_init": "he"})

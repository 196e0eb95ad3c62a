"""Backbones: torchvision-faithful ResNets (CIFAR stem, grayscale, width), timm, strict loading.

Full-width networks are built on the meta device (shapes only, no memory or compute); real
forward passes use narrow networks on 32x32 inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from cluster_ssl.models.backbones import Backbone, build_backbone, load_backbone_weights
from cluster_ssl.runtime.errors import UserError

FEATURE_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Convolutions this small run faster on one thread, and far faster on busy shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
@pytest.mark.parametrize("name", sorted(FEATURE_DIMS))
def test_full_width_feature_dim_and_output_shape(name: str, stem: str) -> None:
    with torch.device("meta"):
        backbone = build_backbone(name, stem=stem)
        out = backbone(torch.empty(2, 3, 32, 32))
    assert isinstance(backbone, Backbone)
    assert backbone.feature_dim == FEATURE_DIMS[name]
    assert out.shape == (2, FEATURE_DIMS[name])


@pytest.mark.parametrize("name", sorted(FEATURE_DIMS))
def test_width_one_has_torchvision_keys_and_shapes_without_fc(name: str) -> None:
    with torch.device("meta"):
        ours = build_backbone(name).net.state_dict()
        theirs = getattr(torchvision.models, name)(weights=None).state_dict()
    expected = {k: v.shape for k, v in theirs.items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in ours.items()} == expected


def test_resnet18_computes_what_torchvision_computes() -> None:
    reference = torchvision.models.resnet18(weights=None).eval()
    reference.fc = nn.Identity()
    backbone = build_backbone("resnet18").eval()
    load_backbone_weights(backbone, reference.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), reference(x))


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
@pytest.mark.parametrize("name", sorted(FEATURE_DIMS))
def test_narrow_resnet_forward(name: str, stem: str) -> None:
    backbone = build_backbone(name, stem=stem, width=0.25)
    out = backbone(torch.randn(2, 3, 32, 32))
    assert backbone.feature_dim == FEATURE_DIMS[name] // 4
    assert out.shape == (2, backbone.feature_dim)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert backbone.net.conv1.weight.grad is not None


def test_cifar_stem_is_3x3_stride_1_without_maxpool() -> None:
    cifar = build_backbone("resnet18", stem="cifar", width=0.125).net
    assert (cifar.conv1.kernel_size, cifar.conv1.stride, cifar.conv1.padding) == (
        (3, 3),
        (1, 1),
        (1, 1),
    )
    assert isinstance(cifar.maxpool, nn.Identity)
    imagenet = build_backbone("resnet18", width=0.125).net
    assert (imagenet.conv1.kernel_size, imagenet.conv1.stride) == ((7, 7), (2, 2))
    assert isinstance(imagenet.maxpool, nn.MaxPool2d)
    x = torch.randn(1, 3, 32, 32)
    assert cifar.layer4(cifar.layer3(cifar.layer2(cifar.layer1(cifar.conv1(x))))).shape[-1] == 4


def test_grayscale_input() -> None:
    backbone = build_backbone("resnet18", in_channels=1, stem="cifar", width=0.125)
    assert backbone.net.conv1.in_channels == 1
    assert backbone(torch.randn(2, 1, 28, 28)).shape == (2, 64)


def test_width_scales_every_stage() -> None:
    net = build_backbone("resnet18", width=0.25).net
    assert net.conv1.out_channels == 16
    stages = [net.layer1, net.layer2, net.layer3, net.layer4]
    assert [stage[-1].conv2.out_channels for stage in stages] == [16, 32, 64, 128]
    bottleneck = build_backbone("resnet50", width=0.25).net
    assert [stage[-1].conv3.out_channels for stage in [bottleneck.layer1, bottleneck.layer4]] == [
        64,
        512,
    ]
    with torch.device("meta"):
        full = _n_params(build_backbone("resnet18"))
    assert _n_params(net) < full / 10


def test_width_without_channels_is_rejected() -> None:
    with pytest.raises(UserError, match="width"):
        build_backbone("resnet18", width=0.001)


def test_channels_last_gives_the_same_features() -> None:
    backbone = build_backbone("resnet18", stem="cifar", width=0.125).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = backbone(x)
        backbone.to(memory_format=torch.channels_last)
        out = backbone(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected)


def test_timm_model_by_name() -> None:
    backbone = build_backbone("timm:test_resnet", in_channels=1)
    out = backbone(torch.randn(2, 1, 32, 32))
    assert backbone.name == "timm:test_resnet"
    assert out.shape == (2, backbone.feature_dim)


class _ScanSTLStem(nn.Module):
    """The stem of SCAN's ``models/resnet_stl.py`` (lines 77-80, 115), copied layer by layer."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(torch.relu(self.bn1(self.conv1(x))))


def test_stl_stem_is_scans_resnet_stl() -> None:
    """A 96x96 image gives SCAN's STL-10 feature maps: 49 after the stem and layer1, then
    25, 13, 7, which SCAN's ``AvgPool2d(7)`` (here the adaptive pool) reduces to 1x1."""
    net = build_backbone("resnet18", stem="stl", width=0.125).net
    assert net.stem == "stl"
    assert (net.conv1.kernel_size, net.conv1.stride, net.conv1.padding) == (
        (3, 3),
        (1, 1),
        (1, 1),
    )
    assert net.conv1.bias is None
    assert isinstance(net.maxpool, nn.MaxPool2d)
    assert (net.maxpool.kernel_size, net.maxpool.stride, net.maxpool.padding) == (2, 2, 1)
    original = _ScanSTLStem(net.conv1.out_channels)
    original.load_state_dict(
        {k: v for k, v in net.state_dict().items() if k.startswith(("conv1.", "bn1."))}
    )
    net.eval(), original.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        stem = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        assert torch.allclose(stem, original(x))
        sizes = [stem.shape[-1]]
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            stem = layer(stem)
            sizes.append(stem.shape[-1])
        assert sizes == [49, 49, 25, 13, 7]
        pooled = nn.AvgPool2d(7, stride=1)(stem).flatten(1)
        assert torch.allclose(net(x), pooled, atol=1e-6)


def test_stem_choice_and_its_errors() -> None:
    assert build_backbone("resnet18", width=0.125).net.stem == "imagenet"
    cifar = build_backbone("resnet18", stem="cifar", width=0.125).net
    assert cifar.stem == "cifar" and isinstance(cifar.maxpool, nn.Identity)
    with pytest.raises(UserError, match="stem=vgg: unknown stem; use one of imagenet"):
        build_backbone("resnet18", stem="vgg")
    with pytest.raises(UserError, match="only supported for the torchvision ResNets"):
        build_backbone("timm:test_resnet", stem="stl")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 0.5}, "width=0.5 .*add --set width=1$"),
        ({"stem": "cifar"}, r"stem=cifar .*add --set stem=imagenet \(the model's own\)$"),
    ],
)
def test_timm_rejects_resnet_only_options(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_backbone("timm:test_resnet", **kwargs)


def test_unknown_timm_model() -> None:
    with pytest.raises(UserError, match="no_such_net"):
        build_backbone("timm:no_such_net")
    with pytest.raises(UserError, match="^timm has no model 'no_such_net'"):  # named first
        build_backbone("timm:no_such_net", width=0.25, stem="cifar")


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(UserError) as info:
        build_backbone("vgg16")
    for expected in ("vgg16", "resnet18", "resnet34", "resnet50", "timm:<model_name>"):
        assert expected in str(info.value)


# --- strict loading ---------------------------------------------------------------------


def _tiny() -> Backbone:
    return build_backbone("resnet18", stem="cifar", width=0.125)


@pytest.fixture
def source() -> dict[str, torch.Tensor]:
    """A state dict of another tiny ResNet-18 (different random weights)."""
    return _tiny().net.state_dict()


def _assert_loaded(backbone: Backbone, source: dict[str, torch.Tensor]) -> None:
    for key, value in backbone.net.state_dict().items():
        assert torch.equal(value, source[key]), key


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": {f"module.backbone.net.{k}": v for k, v in sd.items()}},
        lambda sd: {"model": {f"encoder.{k}": v for k, v in sd.items()}, "epoch": 3},
    ],
    ids=["raw", "module", "state_dict-chain", "model-encoder"],
)
def test_loads_with_wrappers_and_prefixes(source: dict, wrap) -> None:
    backbone = _tiny()
    load_backbone_weights(backbone, wrap(source))
    _assert_loaded(backbone, source)


def test_backbone_state_dict_round_trips(source: dict) -> None:
    first = _tiny()
    load_backbone_weights(first, source)
    second = _tiny()
    load_backbone_weights(second, first.state_dict())
    _assert_loaded(second, source)


def test_missing_key_is_named_and_nothing_is_loaded(source: dict) -> None:
    backbone = _tiny()
    before = {k: v.clone() for k, v in backbone.net.state_dict().items()}
    state = {f"module.{k}": v for k, v in source.items() if k != "layer4.1.bn2.running_mean"}
    with pytest.raises(UserError) as info:
        load_backbone_weights(backbone, state)
    assert "missing keys layer4.1.bn2.running_mean" in str(info.value)
    assert "'module.'" in str(info.value)
    for key, value in backbone.net.state_dict().items():
        assert torch.equal(value, before[key])


def test_unexpected_key_is_named(source: dict) -> None:
    with pytest.raises(UserError, match=r"unexpected keys projector\.weight"):
        load_backbone_weights(_tiny(), {**source, "projector.weight": torch.zeros(1)})


def test_other_modules_of_a_full_model_need_an_explicit_ignore(source: dict) -> None:
    state = {f"backbone.net.{k}": v for k, v in source.items()}
    state["cluster_head.weight"] = torch.zeros(10, 64)
    with pytest.raises(UserError, match=r"unexpected keys cluster_head\.weight"):
        load_backbone_weights(_tiny(), {"method": state})
    backbone = _tiny()
    load_backbone_weights(backbone, {"method": state}, ignore=("cluster_head.",))
    _assert_loaded(backbone, source)


def test_classifier_keys_need_an_explicit_ignore(source: dict) -> None:
    state = {**source, "fc.weight": torch.zeros(10, 64), "fc.bias": torch.zeros(10)}
    with pytest.raises(UserError, match=r"unexpected keys fc\.bias, fc\.weight"):
        load_backbone_weights(_tiny(), state)
    backbone = _tiny()
    load_backbone_weights(backbone, state, ignore=("fc.",))
    _assert_loaded(backbone, source)


def test_pretrained_path(tmp_path: Path, source: dict) -> None:
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {**source, "fc.weight": torch.zeros(10, 64)}}, path)
    backbone = build_backbone(
        "resnet18",
        stem="cifar",
        width=0.125,
        pretrained_path=str(path),
        pretrained_ignore=("fc.",),
    )
    _assert_loaded(backbone, source)


def test_unreadable_or_missing_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_backbone_weights(_tiny(), tmp_path / "absent.pth")
    pickled = tmp_path / "objects.pt"
    torch.save({"model": {"conv1.weight": torch.zeros(1)}, "extra": Path("x")}, pickled)
    with pytest.raises(UserError, match="load_checkpoint"):
        load_backbone_weights(_tiny(), pickled)
    with pytest.raises(UserError, match="state dict"):
        load_backbone_weights(_tiny(), {"model": [1, 2]})

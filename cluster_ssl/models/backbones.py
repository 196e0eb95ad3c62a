"""Backbones: torchvision-architecture ResNets (CIFAR / STL stem, grayscale, width) and timm models.

``build_backbone(name, ...)`` returns a :class:`Backbone` whose ``forward(x)`` gives pooled
features of shape (N, ``feature_dim``). Names:

* ``resnet18``, ``resnet34``, ``resnet50``: torchvision's architectures, built here from
  torchvision's own ``BasicBlock`` / ``Bottleneck`` under torchvision's layer names
  (``conv1``, ``bn1``, ``layer1`` .. ``layer4``) so torchvision checkpoints load at width 1.
  The classifier ``fc`` is left out: its keys in an ImageNet checkpoint are unexpected unless
  the caller ignores them (``ignore=("fc.",)``). Weights are never downloaded.
  The first layers (the stem) are one of :data:`STEMS`: ``imagenet`` (torchvision's 7x7
  stride-2 conv + 3x3 stride-2 max-pool), ``cifar`` (3x3 stride-1 conv, no max-pool) or
  ``stl`` (SCAN's ``models/resnet_stl.py``: 3x3 stride-1 conv + 2x2 stride-2 max-pool with
  padding 1, so a 96x96 image gives 49-25-13-7 feature maps in layer1..layer4).
* ``timm:<model_name>``: any timm model, created with ``pretrained=False`` and
  ``num_classes=0`` so it returns pooled features.

Weights are loaded strictly (:func:`load_backbone_weights`): a checkpoint whose keys do not all
match is an error that names the keys, never a silently half-initialised network.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.state import load_state_strict

TIMM_PREFIX = "timm:"

#: the ResNet stems: torchvision's ImageNet one, the CIFAR one, SCAN's STL-10 one
STEMS = ("imagenet", "cifar", "stl")

RESNET_SPECS: dict[str, tuple[type[BasicBlock | Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}

# Keys under which checkpoints nest the state dict: the usual "state_dict" / "model", and
# "method", where cluster-ssl's trainer stores the method's state dict.
STATE_DICT_KEYS = ("state_dict", "model", "method")

# Prefixes that wrappers put in front of the network's own key names. "net." is the one
# ``Backbone`` itself adds, so ``backbone.state_dict()`` loads back.
KEY_PREFIXES = ("module.", "backbone.", "encoder.", "model.", "net.")


class ResNet(nn.Module):
    """torchvision's ResNet without the classifier, with a width multiplier and a choice of stem.

    Same layer names, block classes and initialisation as ``torchvision.models.ResNet``, so at
    ``width=1`` its state dict equals torchvision's minus ``fc.*``.

    Args:
        block: torchvision's ``BasicBlock`` (ResNet-18/34) or ``Bottleneck`` (ResNet-50).
        layers: number of blocks in each of the four stages.
        in_channels: image channels (1 for grayscale).
        width: multiplies every stage's channels: 64-128-256-512 (times the block expansion)
            become e.g. 16-32-64-128 at ``width=0.25``.
        stem: one of :data:`STEMS`: ``"imagenet"`` torchvision's; ``"cifar"`` replaces the
            7x7 stride-2 ``conv1`` by a 3x3 stride-1 one and the max-pool by the identity, for
            32x32 and other small images; ``"stl"`` is SCAN's STL-10 ResNet
            (``models/resnet_stl.py``): ``Conv2d(in, 64, 3, stride=1, padding=1)``, BN, ReLU,
            then ``MaxPool2d(kernel_size=2, stride=2, padding=1)``.

    Raises:
        UserError: ``in_channels`` below 1, a ``width`` that leaves no channels, or an
            unknown ``stem``.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        in_channels: int = 3,
        width: float = 1.0,
        stem: str = "imagenet",
    ) -> None:
        super().__init__()
        check_stem(stem)
        base = round(64 * width)
        if in_channels < 1:
            raise UserError(f"in_channels must be at least 1; got {in_channels}")
        if base < 1:
            raise UserError(f"width {width} leaves no channels; use a width of at least 1/64")
        self.stem = stem
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, base, 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        elif stem == "stl":
            self.conv1 = nn.Conv2d(in_channels, base, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, base, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = base
        self.layer1 = self._make_layer(block, base, layers[0], stride=1)
        self.layer2 = self._make_layer(block, base * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, base * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, base * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = base * 8 * block.expansion
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        """One stage, exactly as ``torchvision.models.ResNet._make_layer`` (no dilation)."""
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        stage = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = out_channels
        stage += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute globally average-pooled features of a batch of images.

        Args:
            x: (N, C, H, W) images, C = ``in_channels``.

        Returns:
            (N, feature_dim) features.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def check_stem(stem: str) -> None:
    """A UserError naming the choices when ``stem`` is none of :data:`STEMS`."""
    if stem not in STEMS:
        raise UserError(f"--set stem={stem}: unknown stem; use one of {', '.join(STEMS)}")


class Backbone(nn.Module):
    """A feature extractor: ``forward(x)`` returns pooled features (N, ``feature_dim``).

    Args:
        net: the network to wrap, returning (N, ``feature_dim``) features.
        feature_dim: size of the output features.
        name: the name it was built from.

    Attributes:
        net: the wrapped network (a :class:`ResNet` or a timm model), under its own key names.
        feature_dim: size of the output features.
        name: the name it was built from, e.g. ``"resnet18"`` or ``"timm:resnet10t"``.
    """

    def __init__(self, net: nn.Module, feature_dim: int, name: str) -> None:
        super().__init__()
        self.net = net
        self.feature_dim = feature_dim
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute pooled features of a batch of images.

        Args:
            x: (N, C, H, W) images.

        Returns:
            (N, feature_dim) features.
        """
        return self.net(x)


def build_backbone(
    name: str,
    *,
    in_channels: int = 3,
    stem: str = "imagenet",
    width: float = 1.0,
    pretrained_path: str | Path | None = None,
    pretrained_ignore: tuple[str, ...] = (),
) -> Backbone:
    """Build a backbone by name, optionally loading weights strictly from a file.

    Args:
        name: ``resnet18``, ``resnet34``, ``resnet50`` or ``timm:<model_name>``.
        in_channels: image channels (1 for grayscale, 3 for RGB).
        stem: one of :data:`STEMS` (see :class:`ResNet`); timm models take only
            ``"imagenet"``, their own.
        width: ResNets only: channel multiplier (0.25 gives a ResNet-18 of 16-32-64-128).
        pretrained_path: a weights file, loaded with :func:`load_backbone_weights`.
        pretrained_ignore: key prefixes of that file to leave out, e.g. ``("fc.",)`` for a
            torchvision ImageNet checkpoint.

    Returns:
        The :class:`Backbone`, its ``name`` the lower-cased ResNet name or
        ``timm:<model_name>``.

    Raises:
        UserError: unknown name, an option the architecture does not support, or weights
            that do not match.
    """
    key = name.strip()
    if key.lower() in RESNET_SPECS:
        block, layers = RESNET_SPECS[key.lower()]
        net = ResNet(block, layers, in_channels=in_channels, width=width, stem=stem)
        backbone = Backbone(net, net.feature_dim, key.lower())
    elif key.startswith(TIMM_PREFIX):
        backbone = _build_timm(key[len(TIMM_PREFIX) :], in_channels, stem, width)
    else:
        raise UserError(
            f"unknown backbone {name!r}; choose one of {', '.join(RESNET_SPECS)} "
            f"or '{TIMM_PREFIX}<model_name>' for any timm model (e.g. '{TIMM_PREFIX}resnet18d')"
        )
    if pretrained_path is not None:
        load_backbone_weights(backbone, pretrained_path, ignore=pretrained_ignore)
    return backbone


def _build_timm(model_name: str, in_channels: int, stem: str, width: float) -> Backbone:
    name = f"{TIMM_PREFIX}{model_name}"
    if not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name}*")[:5]
        hint = f"; similar names: {', '.join(close)}" if close else ""
        raise UserError(f"timm has no model {model_name!r}{hint}")
    if width != 1.0:
        raise UserError(
            f"width={width} is only supported for the torchvision ResNets, not {name}; "
            f"add --set width=1"
        )
    if stem != "imagenet":
        raise UserError(
            f"stem={stem} is only supported for the torchvision ResNets, not {name}; "
            f"add --set stem=imagenet (the model's own)"
        )
    net = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=in_channels)
    feature_dim = getattr(net, "head_hidden_size", None) or net.num_features
    return Backbone(net, int(feature_dim), name)


def load_backbone_weights(
    backbone: Backbone,
    weights: str | Path | Mapping[str, Any],
    *,
    ignore: tuple[str, ...] = (),
) -> None:
    """Load weights into ``backbone.net`` strictly, naming every key that does not match.

    Key prefixes added by wrappers (``module.``, ``backbone.``, ``encoder.``, ``model.``,
    ``net.``, and chains of them such as ``module.backbone.net.``) are stripped only when the
    stripped keys then match the network's keys exactly; otherwise nothing is loaded and the
    error names the missing, unexpected and shape-mismatched keys (relative to the closest
    prefix).

    Args:
        backbone: the backbone to fill.
        weights: a file (read with ``torch.load(weights_only=True)``), a state dict, or a
            checkpoint dict holding the state dict under ``"state_dict"``, ``"model"`` or
            ``"method"`` (cluster-ssl's trainer; pass what ``load_checkpoint`` returns).
        ignore: key prefixes to drop before matching, e.g. ``("fc.",)`` for the classifier of
            a torchvision ImageNet checkpoint. They apply to the key names as reported in the
            error message (after any stripped wrapper prefix).

    Raises:
        UserError: an unreadable file, or keys that do not match.
    """
    state = _state_dict_of(_read(weights) if isinstance(weights, str | Path) else weights)
    target = set(backbone.net.state_dict())
    best_prefix, best_state, best_overlap = "", state, -1
    for prefix in _candidate_prefixes(state):
        stripped = {
            (key[len(prefix) :] if key.startswith(prefix) else key): value
            for key, value in state.items()
        }
        stripped = {k: v for k, v in stripped.items() if not k.startswith(ignore)}
        overlap = len(target & set(stripped))
        if overlap > best_overlap:
            best_prefix, best_state, best_overlap = prefix, stripped, overlap
    what = f"backbone {backbone.name}"
    if best_prefix:
        what += f" (after stripping the key prefix {best_prefix!r})"
    load_state_strict(backbone.net, best_state, what)


def _read(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"backbone weights not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{path} holds Python objects besides weights, so it is not read directly; if it is "
            "a cluster-ssl checkpoint you trust, pass "
            "cluster_ssl.engine.checkpoint.load_checkpoint(path) instead of the path"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any other failure means an unreadable file
        raise UserError(f"cannot read backbone weights {path} ({type(exc).__name__})") from None


def _state_dict_of(checkpoint: Any) -> dict[str, Any]:
    """Unwrap ``{"state_dict": ...}`` / ``{"model": ...}`` / ``{"method": ...}`` nesting."""
    while isinstance(checkpoint, Mapping):
        inner = next(
            (checkpoint[k] for k in STATE_DICT_KEYS if isinstance(checkpoint.get(k), Mapping)),
            None,
        )
        if inner is None:
            break
        checkpoint = inner
    if not isinstance(checkpoint, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor)
        for key, value in checkpoint.items()
    ):
        raise UserError(
            f"backbone weights must be a state dict (or hold one under "
            f"{', '.join(repr(k) for k in STATE_DICT_KEYS)}); got {type(checkpoint).__name__}"
        )
    return dict(checkpoint)


def _candidate_prefixes(state: Mapping[str, Any]) -> list[str]:
    """``""`` and every chain of wrapper prefixes that starts some key, shortest first."""
    found = {""}
    for key in state:
        prefix = ""
        while rest := next((p for p in KEY_PREFIXES if key.startswith(prefix + p)), None):
            prefix += rest
            found.add(prefix)
    return sorted(found, key=lambda prefix: (len(prefix), prefix))

"""SimCLR + DEC is this toolkit's combination of two papers, not a paper: no preset has an
original (its pretext is SimCLR's, recipes/originals/simclr.py)."""

from __future__ import annotations

_NO_PAPER = "no paper ran SimCLR + DEC; its pretext stage is SimCLR's preset (see simclr)"

PROTOCOLS: dict = {}

WITHOUT_ORIGINAL = {
    dataset: _NO_PAPER
    for dataset in (
        "cifar10",
        "cifar100-20",
        "stl10",
        "imagenet10",
        "imagenet-dogs",
        "tiny-imagenet",
        "digits",
        "fashion-mnist",
    )
}

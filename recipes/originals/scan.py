"""SCAN (wvangansbeke/Unsupervised-Classification): its pretext (recipes/originals/simclr.py),
``configs/scan/scan_*.yml`` for the clustering step and ``configs/selflabel/selflabel_*.yml``
for self-labelling; on the ImageNet subsets its ImageNet-50 configs (it has none for
ImageNet-10 or ImageNet-Dogs) over MoCo v2's weights."""

from __future__ import annotations

from recipes.originals import Original, Protocol, Unmatched
from recipes.originals.simclr import CONFIG_NAME, SCAN_REPO, pretext_rows

#: SCAN's scan and self-label epochs and batches on CIFAR-10, CIFAR-100-20, STL-10
STEPS = {
    "cifar10": {"scan.epochs": 50, "scan.batch_size": 128, "selflabel.epochs": 200},
    "cifar100-20": {"scan.epochs": 100, "scan.batch_size": 512, "selflabel.epochs": 200},
    "stl10": {"scan.epochs": 100, "scan.batch_size": 128, "selflabel.epochs": 100},
}
#: SCAN's Cutout side per image side (``cutout_kwargs.length``)
CUTOUT = {32: 16, 96: 32, 224: 75}

INCLUDE_ANCHOR = Original(
    "scan.include_anchor",
    True,
    f"{SCAN_REPO} utils/memory.py mine_nearest_neighbors (topk+1, 'sample itself is "
    "included'); data/custom_dataset.py NeighborsDataset draws from all of them",
)


def _heldout(script: str, lines: str) -> Original:
    return Original(
        "scan.heldout_neighbours",
        5,
        f"{SCAN_REPO} {script} lines {lines}",
        note="top-5 validation neighbours for the head choice",
    )


def _strong(config: str, side: int) -> tuple[Original, ...]:
    """The strong augmentation (``augmentation_strategy: ours``) of both later steps."""
    transforms = f"{SCAN_REPO} utils/common_config.py get_train_transformations ('ours')"
    return (
        Original("strong_ops", 4, config, note="num_strong_augs: 4"),
        Original("cutout", None, config, note=f"length {CUTOUT[side]}: our default for {side} px"),
        Original(
            "strong_crop_padding", 0, transforms, note="RandomCrop(crop_size) without padding"
        ),
    )


def _selflabel(config: str, imagenet: bool) -> tuple[Original, ...]:
    return (
        Original("selflabel.confidence_threshold", 0.99, config),
        Original(
            "selflabel.class_balancing",
            not imagenet,
            config,
            note=f"apply_class_balancing: {not imagenet}",
        ),
        Original(
            "selflabel.ema_alpha",
            0.999 if imagenet else 0.0,
            config,
            note="use_ema: True, ema_alpha: 0.999" if imagenet else "use_ema: False (0)",
        ),
    )


def cifar_stl_rows(dataset: str) -> tuple[Original, ...]:
    """SCAN's three steps on CIFAR-10, CIFAR-100-20 or STL-10."""
    name = CONFIG_NAME[dataset]
    scan = f"{SCAN_REPO} configs/scan/scan_{name}.yml"
    selflabel = f"{SCAN_REPO} configs/selflabel/selflabel_{name}.yml"
    side = 96 if dataset == "stl10" else 32
    steps = STEPS[dataset]
    return (
        Original(
            "pretext",
            "simclr",
            f"{SCAN_REPO} configs/pretext/simclr_{name}.yml",
            note="setup: simclr",
        ),
        *pretext_rows(dataset),
        Original("scan.num_neighbours", 20, scan, note="num_neighbors: 20"),
        Original("scan.num_heads", 1, scan),
        Original("scan.entropy_weight", 5.0, scan),
        Original("scan.update_heads_only", False, scan, note="update_cluster_head_only: False"),
        Original("scan.augmentation", "scan_strong", scan, note="augmentation_strategy: ours"),
        Original("scan.epochs", steps["scan.epochs"], scan),
        Original("scan.batch_size", steps["scan.batch_size"], scan),
        Original("scan.optimizer", "adam", scan),
        Original("scan.lr", 1e-4, scan),
        Original("scan.weight_decay", 1e-4, scan),
        INCLUDE_ANCHOR,
        _heldout("simclr.py", "141-149"),
        *_strong(scan, side),
        Original("selflabel.epochs", steps["selflabel.epochs"], selflabel),
        Original("selflabel.batch_size", 1000, selflabel),
        Original("selflabel.optimizer", "adam", selflabel),
        Original("selflabel.lr", 1e-4, selflabel),
        Original("selflabel.weight_decay", 1e-4, selflabel),
        *_selflabel(selflabel, imagenet=False),
    )


STL_LATER_STEPS = Unmatched(
    "STL-10 clustering and self-labelling split",
    "train (5,000 images); only the pretext trains on train+unlabeled",
    f"{SCAN_REPO} scan.py line 36, selflabel.py line 62 (split='train')",
    "every stage here shares one training split (recipes/scan.py), so all three train on "
    "train+unlabeled",
)


def imagenet_rows() -> tuple[Original, ...]:
    """SCAN's ImageNet-50 configs, taken for ImageNet-10 and ImageNet-Dogs."""
    scan = f"{SCAN_REPO} configs/scan/scan_imagenet_50.yml"
    selflabel = f"{SCAN_REPO} configs/selflabel/selflabel_imagenet_50.yml"
    moco = f"{SCAN_REPO} moco.py"
    weights = (
        "SCAN's ResNet-50 is MoCo v2's ImageNet-1k checkpoint, which a subset run does not "
        "train; the SimCLR pretext trains the preset's ResNet-18 on the subset itself "
        "(--set backbone=resnet50 pretrained=FILE loads other weights)"
    )
    return (
        Original(
            "pretext",
            "moco",
            f"{SCAN_REPO} configs/pretext/moco_imagenet50.yml",
            reason=weights,
            note="setup: moco, MoCo v2's ImageNet-1k weights",
        ),
        Original("backbone", "resnet50", scan, reason=weights),
        Original(
            "pretrained",
            "moco_v2_800ep_pretrain.pth.tar",
            f"{moco} lines 65-66",
            reason=weights,
        ),
        Original("stem", "imagenet", f"{SCAN_REPO} models/resnet.py (torchvision ResNet-50)"),
        Original("image_size", 224, scan, note="crop_size: 224"),
        Original(
            "split",
            "train",
            f"{SCAN_REPO} utils/common_config.py get_train_dataset (ImageNetSubset 'train')",
        ),
        Original(
            "eval_split",
            "test",
            f"{SCAN_REPO} utils/common_config.py get_val_dataset",
            note="ImageNetSubset split='val': the ImageNet validation images of the classes",
        ),
        Original("scan.num_neighbours", 50, f"{moco} lines 97-106", note="num_neighbors: 50"),
        Original("scan.num_heads", 10, scan),
        Original("scan.entropy_weight", 5.0, scan),
        Original("scan.update_heads_only", True, scan, note="update_cluster_head_only: True"),
        Original("scan.augmentation", "simclr", scan, note="augmentation_strategy: simclr"),
        Original("scan.epochs", 100, scan),
        Original("scan.batch_size", 512, scan),
        Original("scan.optimizer", "sgd", scan, note="nesterov: False"),
        Original("scan.lr", 5.0, scan),
        Original("scan.momentum", 0.9, scan),
        Original("scan.weight_decay", 0.0, scan),
        INCLUDE_ANCHOR,
        _heldout("moco.py", "109-117"),
        *_strong(selflabel, 224),
        Original("selflabel.epochs", 25, selflabel),
        Original("selflabel.batch_size", 512, selflabel),
        Original("selflabel.optimizer", "sgd", selflabel, note="nesterov: False"),
        Original("selflabel.lr", 0.03, selflabel),
        Original("selflabel.momentum", 0.9, selflabel),
        Original("selflabel.weight_decay", 0.0, selflabel),
        *_selflabel(selflabel, imagenet=True),
    )


IMAGENET_SUBSET = Unmatched(
    "ImageNet subset",
    "ImageNet-50/100/200 (data/imagenet_subsets/*.txt); no ImageNet-10 or ImageNet-Dogs",
    f"{SCAN_REPO} configs/scan/, data/imagenet_subsets/",
    "ImageNet-10 and ImageNet-Dogs are CC's and IDFD's subsets; the 50-class configs are "
    "the nearest (100 and 200 differ only in a clustering batch of 1024)",
)

PROTOCOLS = {
    "cifar10": Protocol(cifar_stl_rows("cifar10")),
    "cifar100-20": Protocol(cifar_stl_rows("cifar100-20")),
    "stl10": Protocol(cifar_stl_rows("stl10"), (STL_LATER_STEPS,)),
    "imagenet10": Protocol(imagenet_rows(), (IMAGENET_SUBSET,)),
    "imagenet-dogs": Protocol(imagenet_rows(), (IMAGENET_SUBSET,)),
}

WITHOUT_ORIGINAL = {
    "tiny-imagenet": "SCAN has no Tiny-ImageNet config",
    "digits": "a CPU preset of ours (docs/RESULTS.md), no paper ran it",
    "fashion-mnist": "a CPU preset of ours (docs/RESULTS.md), no paper ran it",
}

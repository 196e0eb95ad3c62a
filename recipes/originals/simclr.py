"""SimCLR as SCAN's pretext: the original is SCAN's code (wvangansbeke/Unsupervised-
Classification), ``configs/pretext/simclr_*.yml`` and the ``simclr.py`` that runs them."""

from __future__ import annotations

from recipes.originals import Original, Protocol

SCAN_REPO = "wvangansbeke/Unsupervised-Classification"
#: SCAN's name of each dataset's config
CONFIG_NAME = {"cifar10": "cifar10", "cifar100-20": "cifar20", "stl10": "stl10"}
#: the side SCAN's configs crop to (``crop_size``), the dataset's own
SIDE = {"cifar10": 32, "cifar100-20": 32, "stl10": 96}


def pretext_rows(dataset: str) -> tuple[Original, ...]:
    """The settings of SCAN's SimCLR pretext on CIFAR-10, CIFAR-100-20 or STL-10."""
    config = f"{SCAN_REPO} configs/pretext/simclr_{CONFIG_NAME[dataset]}.yml"
    models = f"{SCAN_REPO} utils/common_config.py get_model"
    stl = dataset == "stl10"
    network = "models/resnet_stl.py" if stl else "models/resnet_cifar.py"
    return (
        Original("backbone", "resnet18", config),
        Original("width", 1.0, f"{SCAN_REPO} {network}", note="64-512 channels"),
        Original(
            "stem",
            "stl" if stl else "cifar",
            f"{models}: {network}",
            note="3x3 stride-1 conv + 2x2 stride-2 max-pool"
            if stl
            else "3x3 stride-1 conv, no max-pool",
        ),
        Original(
            "image_size",
            None,
            config,
            note=f"crop_size {SIDE[dataset]}: the dataset's own side",
        ),
        Original(
            "split",
            "train+unlabeled" if stl else "train",
            f"{SCAN_REPO} simclr.py lines 54-55",
            note="split='train+unlabeled' (used by STL-10 only)" if stl else "",
        ),
        Original(
            "eval_split",
            "test",
            f"{SCAN_REPO} utils/common_config.py get_val_dataset",
            note="the test images score the run",
        ),
        Original("epochs", 500, config),
        Original("batch_size", 512, config),
        Original("optimizer", "sgd", config, note="nesterov: False"),
        Original("lr", 0.4, config),
        Original("momentum", 0.9, config),
        Original("weight_decay", 1e-4, config),
        Original("schedule", "cosine", config),
        Original(
            "final_lr_fraction",
            1e-3,
            f"{SCAN_REPO} utils/common_config.py adjust_learning_rate",
            note="eta_min = lr * lr_decay_rate ** 3, lr_decay_rate 0.1",
        ),
        Original("warmup", 0.0, f"{SCAN_REPO} utils/common_config.py adjust_learning_rate"),
        Original(
            "schedule_per_epoch",
            True,
            f"{SCAN_REPO} utils/common_config.py adjust_learning_rate",
            note="lr set once per epoch, before its first batch",
        ),
        Original("temperature", 0.1, config),
        Original(
            "head_hidden",
            512,
            f"{SCAN_REPO} models/models.py ContrastiveModel",
            note="Linear(512, 512)-ReLU-Linear(512, 128)",
        ),
        Original("feature_dim", 128, config),
        Original(
            "crop_scale",
            None,
            config,
            note="RandomResizedCrop scale [0.2, 1.0]: our simclr pipeline's default",
        ),
        Original("flip", True, f"{SCAN_REPO} utils/common_config.py get_train_transformations"),
        Original(
            "views_in_one_batch",
            None,
            f"{SCAN_REPO} utils/train_utils.py simclr_train lines 26-31",
            note="one batch of both views: the original's choice",
        ),
    )


PROTOCOLS = {dataset: Protocol(pretext_rows(dataset)) for dataset in CONFIG_NAME}

WITHOUT_ORIGINAL = {
    "imagenet10": (
        "SCAN's ImageNet pretext is MoCo v2's ImageNet-1k weights "
        f"({SCAN_REPO} configs/pretext/moco_imagenet50.yml), not SimCLR; the preset runs "
        "SCAN's CIFAR pretext settings at 224 px, batch 256"
    ),
    "imagenet-dogs": "as imagenet10",
    "tiny-imagenet": "SCAN has no Tiny-ImageNet config; SCAN's CIFAR pretext settings at 64 px",
    "digits": "a CPU preset of ours (docs/RESULTS.md), no paper ran it",
    "fashion-mnist": "a CPU preset of ours (docs/RESULTS.md), no paper ran it",
}

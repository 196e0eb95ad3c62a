"""CC (Yunfan-Li/Contrastive-Clustering): ``config/config.yaml``, ``train.py`` (and
``train_STL10.py`` for STL-10), ``modules/`` and ``cluster.py``."""

from __future__ import annotations

from recipes.originals import Original, Protocol

CC_REPO = "Yunfan-Li/Contrastive-Clustering"
CONFIG = f"{CC_REPO} config/config.yaml"
#: where each dataset is loaded and its augmentation strength and blur chosen
TRAIN_LINES = {
    "cifar10": "train.py lines 45-58",
    "cifar100-20": "train.py lines 60-73",
    "stl10": "train_STL10.py lines 60-80",
    "imagenet10": "train.py lines 75-79",
    "imagenet-dogs": "train.py lines 81-85",
    "tiny-imagenet": "train.py lines 87-91",
}
#: the split each dataset trains (and ``cluster.py`` clusters and scores)
SPLIT = {
    "cifar10": "train+test",
    "cifar100-20": "train+test",
    "stl10": "train+test+unlabeled",
    "imagenet10": "train",
    "imagenet-dogs": "train",
    "tiny-imagenet": "train",
}
#: ``Transforms(s=...)``: 0.5 given for CIFAR and Tiny-ImageNet, the default 1.0 elsewhere
NOTE_SPLIT = {
    "imagenet10": "ImageFolder of the train images",
    "imagenet-dogs": "ImageFolder of the train images",
    "tiny-imagenet": "ImageFolder of tiny-imagenet-200/train",
}
STRENGTH = {"cifar10": 0.5, "cifar100-20": 0.5, "tiny-imagenet": 0.5}
BLUR = ("imagenet10", "imagenet-dogs")


def rows(dataset: str) -> tuple[Original, ...]:
    """CC's settings on one of its six datasets."""
    train = f"{CC_REPO} {TRAIN_LINES[dataset]}"
    stl = dataset == "stl10"
    loss = f"{CC_REPO} modules/contrastive_loss.py"
    return (
        Original("backbone", "resnet34", CONFIG, note="resnet: ResNet34"),
        Original(
            "stem",
            "imagenet",
            f"{CC_REPO} modules/resnet.py lines 27-31",
            note="7x7 stride-2 conv + 3x3 stride-2 max-pool on every dataset",
        ),
        Original("image_size", 224, CONFIG, note="every dataset resized to 224"),
        Original(
            "split",
            SPLIT[dataset],
            train,
            note=NOTE_SPLIT.get(dataset, ""),
        ),
        Original(
            "eval_split",
            "train+test" if stl else None,
            f"{CC_REPO} cluster.py",
            note="the training images are clustered and scored"
            if not stl
            else "train+test is clustered and scored",
        ),
        Original(
            "unlabelled_instance_only",
            stl,
            f"{CC_REPO} train_STL10.py lines 13-39" if stl else train,
            note="each epoch the unlabelled images with the instance loss alone, then "
            "train+test with both"
            if stl
            else "",
        ),
        Original("epochs", 1000, CONFIG),
        Original("batch_size", 256, CONFIG),
        Original("optimizer", "adam", f"{CC_REPO} train.py line 107"),
        Original("lr", 3e-4, CONFIG, note="learning_rate: 0.0003"),
        Original("weight_decay", 0.0, CONFIG),
        Original("schedule", "constant", f"{CC_REPO} train.py", note="no scheduler"),
        Original("feature_dim", 128, CONFIG),
        Original("instance_temperature", 0.5, CONFIG),
        Original("cluster_temperature", 1.0, CONFIG),
        Original("entropy_weight", 1.0, f"{loss} ClusterLoss", note="loss + ne_loss"),
        Original(
            "entropy_constant",
            True,
            f"{loss} lines 69-72",
            reason=(
                "log K added to each view's entropy term is a constant: the gradients are the "
                "same; false reports the loss as the paper's equation (--set "
                "entropy_constant=true prints the code's value)"
            ),
            note="ne_i = log(K) + sum p log p",
        ),
        Original(
            "strength",
            STRENGTH.get(dataset, 1.0),
            train,
            note="ColorJitter(0.8s, 0.8s, 0.8s, 0.2s), Transforms(s=...)",
        ),
        Original("blur", dataset in BLUR, train, note="GaussianBlur(23) with p 0.5"),
        Original(
            "crop_scale",
            None,
            f"{CC_REPO} modules/transform.py",
            note="RandomResizedCrop(size) at torchvision's scale 0.08-1",
        ),
        Original("flip", True, f"{CC_REPO} modules/transform.py"),
        Original(
            "normalize",
            False,
            f"{CC_REPO} modules/transform.py lines 37-39",
            note="Normalize only when given a mean and std; train.py gives none",
        ),
        Original(
            "views_in_one_batch",
            None,
            f"{CC_REPO} modules/network.py Network.forward lines 25-26",
            note="one backbone pass per view: the original's choice",
        ),
    )


PROTOCOLS = {dataset: Protocol(rows(dataset)) for dataset in SPLIT}

WITHOUT_ORIGINAL = {
    "digits": "a CPU preset of ours (docs/RESULTS.md), no paper ran it",
    "fashion-mnist": "a CPU preset of ours (docs/RESULTS.md), no paper ran it",
}

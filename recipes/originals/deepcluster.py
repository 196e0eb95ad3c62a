"""DeepCluster (facebookresearch/deepcluster): ``main.py``, ``main.sh`` and ``clustering.py``,
which train AlexNet on ImageNet-1k. No original protocol exists for the smaller datasets;
each preset is compared with that ImageNet run, the differences being the adaptation to
them (recipes/deepcluster.py)."""

from __future__ import annotations

from recipes.originals import Original, Protocol

DC_REPO = "facebookresearch/deepcluster"
MAIN = f"{DC_REPO} main.py"
CLUSTERING = f"{DC_REPO} clustering.py"
#: the presets' k: about 10x the classes (REFERENCE: k ~ 100 for CIFAR-10)
SMALL_DATA_K = (
    "k = 10,000 is 10x ImageNet's 1,000 classes; on a small dataset the preset keeps the "
    "ratio to the classes, about 10x (100 for CIFAR-10, as the clustering papers' "
    "DeepCluster baselines)"
)
ALEXNET = (
    "a ResNet-18 replaces AlexNet-BN on every dataset (recipes/deepcluster.py), as the "
    "other recipes' backbones"
)
OWN_SIDE = "the dataset's own side (None; 64 on Tiny-ImageNet), as the other recipes on it"
#: the split: the clustering papers that report DeepCluster merge train and test
MERGED = (
    "merged as the clustering papers whose DeepCluster baselines are quoted "
    "(recipes/deepcluster.py); the original trains on ImageNet's train folder"
)


def rows(dataset: str) -> tuple[Original, ...]:
    imagenet_like = dataset in ("imagenet10", "imagenet-dogs", "tiny-imagenet")
    return (
        Original("backbone", "alexnet", f"{DC_REPO} main.sh", reason=ALEXNET, note="ARCH=alexnet"),
        Original(
            "split",
            "train",
            f"{MAIN} line 129",
            reason="" if imagenet_like else MERGED,
            note="ImageFolder of the training images",
        ),
        Original(
            "epochs",
            500,
            "unconfirmed: the DeepCluster paper's implementation details (500 epochs) were not "
            "re-read here; main.py's --epochs default is 200 (line 50) and main.sh sets none",
        ),
        Original(
            "image_size",
            224,
            f"{CLUSTERING} lines 142-143",
            reason="" if dataset in ("imagenet10", "imagenet-dogs") else OWN_SIDE,
            note="RandomResizedCrop(224)",
        ),
        Original("batch_size", 256, f"{MAIN} line 54"),
        Original("optimizer", "sgd", f"{MAIN} lines 84-89"),
        Original("lr", 0.05, f"{DC_REPO} main.sh", note="LR=0.05"),
        Original("momentum", 0.9, f"{MAIN} line 56"),
        Original("weight_decay", 1e-5, f"{DC_REPO} main.sh", note="WD=-5: 10 ** -5"),
        Original(
            "head_momentum",
            0.0,
            f"{MAIN} lines 234-239",
            note="a fresh SGD without momentum for the top layer every epoch",
        ),
        Original("schedule", "constant", MAIN, note="no scheduler"),
        Original("sobel", True, f"{DC_REPO} main.sh", note="--sobel"),
        Original("num_pseudo_classes", 10000, f"{DC_REPO} main.sh", reason=SMALL_DATA_K),
        Original("pca_dim", 256, f"{CLUSTERING} lines 76-88", note="PCA-whitening to 256"),
        Original("kmeans_iterations", 20, f"{CLUSTERING} line 168"),
        Original(
            "crop_scale",
            0.08,
            f"{CLUSTERING} lines 142-143",
            note="RandomResizedCrop(224) at torchvision's default scale",
        ),
        Original("flip", True, f"{CLUSTERING} lines 142-143"),
    )


PROTOCOLS = {
    dataset: Protocol(rows(dataset))
    for dataset in (
        "cifar10",
        "cifar100-20",
        "stl10",
        "imagenet10",
        "imagenet-dogs",
        "tiny-imagenet",
    )
}

WITHOUT_ORIGINAL = {
    "digits": "a CPU preset of ours (docs/RESULTS.md), no paper ran it",
    "fashion-mnist": "a CPU preset of ours (docs/RESULTS.md), no paper ran it",
}

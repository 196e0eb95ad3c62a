"""IDFD (TTN-YKK/Clustering_friendly_representation_learning): one script, ``main.py``, which
runs CIFAR-10 only. Its values are the originals on CIFAR-10; on the paper's other datasets
the method's values are taken from it and marked unconfirmed (the paper's text was not
checked here)."""

from __future__ import annotations

from recipes.originals import Original, Protocol, Unmatched

IDFD_REPO = "TTN-YKK/Clustering_friendly_representation_learning"
MAIN = f"{IDFD_REPO} main.py"
ELSEWHERE = "unconfirmed: main.py runs CIFAR-10 only; its value (lines {}) assumed here"


def method_rows(dataset: str) -> tuple[Original, ...]:
    """The loss, memory bank, optimiser and schedule of ``main.py``."""

    def source(lines: str) -> str:
        return f"{MAIN} lines {lines}" if dataset == "cifar10" else ELSEWHERE.format(lines)

    return (
        Original(
            "backbone", "resnet18", source("222-227"), note="torchvision BasicBlock [2,2,2,2]"
        ),
        Original("feature_dim", 128, source("55-56"), note="a linear 512->128 head (low_dim)"),
        Original("temperature", 1.0, source("58-61"), note="NonParametricClassifier tau"),
        Original("bank_momentum", 0.5, source("58-61")),
        Original(
            "bank_init",
            "uniform",
            source("198-203"),
            note="U(-s, s), s = 1 / sqrt(dim / 3), rows not normalised",
        ),
        Original("decorrelation_temperature", 2.0, source("62"), note="Loss(tau2=2.0)"),
        Original("decorrelation_weight", 1.0, source("93"), note="tot_loss = loss_id + loss_fd"),
        Original("epochs", 2000, source("82")),
        Original("batch_size", 128, source("49-50")),
        Original("optimizer", "sgd", source("65-70"), note="nesterov False, dampening 0"),
        Original("lr", 0.03, source("65-70")),
        Original("momentum", 0.9, source("65-70")),
        Original("weight_decay", 5e-4, source("65-70")),
        Original("schedule", "step", source("71-73"), note="MultiStepLR, gamma 0.1"),
        Original(
            "milestones",
            (0.3, 0.475, 0.65, 0.825),
            source("71-73"),
            note="epochs 600, 950, 1300, 1650 of 2000",
        ),
        Original(
            "schedule_per_epoch", True, source("100"), note="MultiStepLR stepped once per epoch"
        ),
        Original(
            "crop_scale",
            None,
            source("34-36"),
            note="RandomResizedCrop scale (0.2, 1.0): our idfd pipeline's default",
        ),
        Original("kmeans_restarts", 20, source("143"), note="KMeans(n_init=20)"),
        Original("cluster_on", "bank", source("139"), note="k-means on npc.memory"),
    )


def cifar10_rows() -> tuple[Original, ...]:
    """``main.py`` as it runs: CIFAR-10's network, normalisation and split."""
    return (
        *method_rows("cifar10"),
        Original(
            "stem",
            "cifar",
            f"{MAIN} lines 224-226",
            note="3x3 stride-1 conv1, max-pool replaced by Identity",
        ),
        Original("image_size", None, f"{MAIN} line 34", note="32: the dataset's own side"),
        Original(
            "std",
            (0.2470, 0.2435, 0.2616),
            f"{MAIN} lines 40-41",
            note="with mean (0.4914, 0.4822, 0.4465)",
        ),
        Original(
            "split",
            "train",
            f"{MAIN} lines 45-48",
            note=(
                "CIFAR10(train=True): the 50,000 training images. The code decides (issue 22, "
                "item 8): the paper's setup section could not be re-read here; ProPos (arXiv "
                "2111.11821, section 4 and Table 1) lists CIFAR-10/20 as train+test while "
                "citing Tao et al. 2021 among several works whose split it follows"
            ),
        ),
        Original(
            "eval_split",
            None,
            f"{MAIN} lines 109-111, 138-144",
            note="k-means on the training images' bank, scored on them",
        ),
    )


NETWORK_ELSEWHERE = Unmatched(
    "network, image size, normalisation and split on this dataset",
    "unconfirmed",
    "main.py runs CIFAR-10 only; the paper's experimental section was not checked here",
    "the preset's choice (recipes/idfd.py): CIFAR-100-20's training images alone, as "
    "main.py's CIFAR-10; train+test merged on STL-10; train only on the ImageNet subsets and "
    "Tiny-ImageNet",
)

PROTOCOLS = {
    "cifar10": Protocol(cifar10_rows()),
    **{
        dataset: Protocol(method_rows(dataset), (NETWORK_ELSEWHERE,))
        for dataset in ("cifar100-20", "stl10", "imagenet10", "imagenet-dogs", "tiny-imagenet")
    },
}

WITHOUT_ORIGINAL = {
    "digits": "a CPU preset of ours (docs/RESULTS.md), no paper ran it",
    "fashion-mnist": "a CPU preset of ours (docs/RESULTS.md), no paper ran it",
}

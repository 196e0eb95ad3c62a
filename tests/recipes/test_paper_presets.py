"""Every paper preset of the ResNet recipes runs end to end through the real CLI on a tiny
dataset written in that dataset's real on-disk format.

Only what must shrink is overridden: one epoch, a small batch, one k-means restart. The
architecture, image size, optimiser, schedule, augmentation and splits stay the preset's
(the in-training monitor runs too: with one epoch, that epoch is the last and is evaluated;
CC skips it, see SHRUNK_FOR). The data
holds as few images as each preset's splits allow while keeping K: K images per merged
train+test split, K per split where training and evaluation use different splits.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from cluster_ssl.cli import main
from cluster_ssl.config import as_dict, build_config, flat_settings
from recipes import RECIPES
from tests.data_formats import (
    write_cifar10,
    write_cifar100,
    write_imagenet10,
    write_imagenet_dogs,
    write_stl10,
    write_tiny_imagenet,
)

pytestmark = pytest.mark.slow

PAPER_DATASETS = ("cifar10", "cifar100-20", "stl10", "imagenet10", "imagenet-dogs", "tiny-imagenet")
#: every recipe with a preset for each of them
RECIPE_NAMES = [
    recipe.name for recipe in RECIPES.values() if set(PAPER_DATASETS) <= set(recipe.presets)
]
SHRUNK = {"batch_size": 4, "kmeans_restarts": 1}  # and --epochs 1
# What else must shrink, per recipe. CC's 224-px ResNet-34 skips the in-training monitor (a
# third of its time on a CPU; the monitor's CC path is tested on digits in
# test_contrastive_methods.py). SCAN's later steps shrink like its pretext, mine 2
# neighbours among the few images, and take every image as confident after one epoch.
SHRUNK_FOR = {
    "cc": {"eval_every": 0},
    # DeepCluster's k-means and PCA must fit in the fewest images (4 Tiny-ImageNet ones)
    "deepcluster": {"num_pseudo_classes": 3, "pca_dim": 2},
    # PCL's queue and prototypes must fit in the few images; no warm-up: the E-step runs
    "pcl": {"queue_size": 2, "num_prototypes": (2, 3), "warmup_epochs": 0},
    "scan": {
        "scan.epochs": 1,
        "selflabel.epochs": 1,
        "scan.batch_size": 4,
        "selflabel.batch_size": 4,
        "scan.num_neighbours": 2,
        "selflabel.confidence_threshold": 0.0,
    },
    "simclr_dec": {"dec.batch_size": 4, "dec.maxiter": 2, "dec.update_interval": 1},
}
TINY_CLASSES = 4  # Tiny-ImageNet's K is the number of wnids written (200 in the real one)
NUM_CLASSES = {
    "cifar10": 10,
    "cifar100-20": 20,
    "stl10": 10,
    "imagenet10": 10,
    "imagenet-dogs": 15,
    "tiny-imagenet": TINY_CLASSES,
}


def preset_config(recipe: str, dataset: str):
    spec = RECIPES.get(recipe)
    return build_config(spec.config, spec.preset(dataset), {})


def merged(recipe: str, dataset: str) -> bool:
    """Whether the preset trains and evaluates on one merged split (train+test), where the
    halves together need K images, rather than on splits that each need K."""
    config = preset_config(recipe, dataset)
    one_split = config.eval_split is None or config.eval_split == config.split
    return one_split and "+" in config.split


def write_tiny_data(dataset: str, root: Path, merged_split: bool) -> None:
    """The fewest images each split needs: with train+test merged, the two halves together
    hold K images; with separate splits, each holds K (k-means on each needs K points)."""
    if dataset == "cifar10":
        n = 5 if merged_split else 10
        write_cifar10(root, n_train=n, n_test=n)
    elif dataset == "cifar100-20":
        n = 10 if merged_split else 20
        write_cifar100(root, n_train=n, n_test=n)
    elif dataset == "stl10":
        # SimCLR trains on train+unlabeled and reports test; CC and IDFD merge train+test
        n = 5 if merged_split else 10
        write_stl10(root, n_train=5, n_test=n, n_unlabeled=5)
    elif dataset == "imagenet10":  # every class folder needs an image in each split
        write_imagenet10(root, n_per_class=1, splits=("train", "val"))
    elif dataset == "imagenet-dogs":
        write_imagenet_dogs(root, n_per_class=1, splits=("train", "val"))
    elif dataset == "tiny-imagenet":
        write_tiny_imagenet(
            root,
            num_classes=TINY_CLASSES,
            n_per_class=1 if merged_split else 2,
            n_val=TINY_CLASSES,
        )
    else:  # pragma: no cover - the parametrisation lists every dataset
        raise AssertionError(dataset)


def as_set(key: str, value) -> str:
    """The ``--set`` argument of a setting; a tuple as its comma-separated items."""
    text = ",".join(map(str, value)) if isinstance(value, tuple) else value
    return f"--set={key}={text}"


@pytest.mark.parametrize("dataset", PAPER_DATASETS)
@pytest.mark.parametrize("recipe", RECIPE_NAMES)
def test_paper_preset_trains_and_reports(tmp_path, capsys, recipe, dataset):
    assert dataset in RECIPES.get(recipe).presets
    root, out = tmp_path / "data", tmp_path / "run"
    write_tiny_data(dataset, root, merged(recipe, dataset))
    argv = ["train", recipe, "--dataset", dataset, "--data-root", str(root), "--out", str(out)]
    shrunk = {**SHRUNK, **SHRUNK_FOR.get(recipe, {})}
    argv += ["--epochs", "1"] + [as_set(key, value) for key, value in shrunk.items()]
    argv += ["--no-progress", "--workers", "0"]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err

    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == recipe and summary["dataset"] == dataset
    assert 0.0 <= summary["acc"] <= 1.0 and 0.0 <= summary["nmi"] <= 1.0
    assert -1.0 <= summary["ari"] <= 1.0
    assert summary["num_clusters"] == NUM_CLASSES[dataset]  # K is never lowered
    assert 1 <= summary["clusters_used"] <= summary["num_clusters"]
    assert summary["stages"][0]["steps"] >= 1
    preset = preset_config(recipe, dataset)
    assert summary["split"] == preset.split
    assert summary["eval_split"] == (preset.eval_split or preset.split)

    if shrunk.get("eval_every") != 0:  # the online monitor scored the training split
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        first = summary["stages"][0]["stage"]
        monitor = [line for line in lines if line["stage"] == first and "knn_acc" in line]
        assert len(monitor) == 1 and {"acc", "nmi", "ari"} <= monitor[0].keys()

    # every setting but the shrunk ones is the preset's (architecture, size, optimiser...)
    checkpoint = Path(summary["checkpoint"])
    stored = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    used = flat_settings(stored["run"]["config"])
    expected = {**flat_settings(as_dict(preset)), **shrunk, "epochs": 1}
    assert {key: used[key] for key in expected} == expected
    shutil.rmtree(checkpoint.parent)  # ResNet checkpoints with optimiser state are large


@pytest.mark.parametrize("recipe", ["cc", "idfd", "pcl", "deepcluster"])
def test_imagenet_subsets_cluster_their_train_images_alone(recipe):
    """CC's and IDFD's tables count 13,000 / 19,500 / 100,000 images: the train split."""
    spec = RECIPES.get(recipe)
    for dataset in ("imagenet10", "imagenet-dogs", "tiny-imagenet"):
        config = build_config(spec.config, spec.presets[dataset], {})
        assert (config.split, config.eval_split) == ("train", None), dataset
    for dataset in ("cifar10", "cifar100-20", "stl10"):
        config = build_config(spec.config, spec.presets[dataset], {})
        if recipe == "cc" and dataset == "stl10":  # CC's train_STL10.py adds the unlabelled
            assert (config.split, config.eval_split) == ("train+test+unlabeled", "train+test")
        elif recipe == "idfd" and dataset != "stl10":  # main.py: CIFAR10(train=True) alone
            assert (config.split, config.eval_split) == ("train", None)
        else:
            assert config.split == "train+test"

"""The dataset layer, on tiny datasets written in their real on-disk formats."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from torch.utils.data import DataLoader

from cluster_ssl.data import (
    DATASETS,
    FileImageDataset,
    TensorImageDataset,
    build_dataset,
    list_datasets,
    scan_images,
)
from cluster_ssl.data.mnist import read_idx
from cluster_ssl.runtime.errors import UserError
from tests.data_formats import (
    write_cifar10,
    write_cifar100,
    write_fashion_mnist,
    write_idx,
    write_image_folder,
    write_imagenet10,
    write_imagenet_dogs,
    write_mnist,
    write_stl10,
    write_tiny_imagenet,
    write_usps,
)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FILE_DATASETS = ["mnist", "usps", "cifar10", "cifar100-20", "stl10", "imagenet10", "tiny-imagenet"]


def user_error(call, *args, **kwargs) -> str:
    """Run ``call``, expect a UserError, and return its message (checked to be one line)."""
    with pytest.raises(UserError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def check_sample(dataset, index: int, shape: tuple[int, ...]) -> dict:
    sample = dataset[index]
    assert set(sample) == {"image", "label", "index"}
    assert sample["image"].dtype == torch.uint8
    assert tuple(sample["image"].shape) == shape
    assert sample["index"] == index
    assert isinstance(sample["label"], int)
    return sample


# ------------------------------------------------------------------------------------ registry


def test_registry_lists_every_dataset_with_consistent_specs():
    names = {spec.name for spec in list_datasets()}
    assert names == {
        "digits",
        "mnist",
        "fashion-mnist",
        "usps",
        "cifar10",
        "cifar100-20",
        "stl10",
        "imagenet10",
        "imagenet-dogs",
        "tiny-imagenet",
        "folder",
        "synthetic",
    }
    for spec in list_datasets():
        assert len(spec.mean) == len(spec.std) == spec.channels
        assert spec.default_split in spec.splits
        assert spec.description and "\n" not in spec.description
    assert DATASETS.get("cifar10").mean == (0.4914, 0.4822, 0.4465)
    assert DATASETS.get("cifar100-20").std == (0.2675, 0.2565, 0.2761)
    assert DATASETS.get("stl10").mean == DATASETS.get("imagenet10").mean


def test_bad_split_names_the_allowed_ones():
    message = user_error(build_dataset, "digits", split="val")
    assert "'val'" in message and "train, test, train+test" in message
    message = user_error(build_dataset, "stl10", split="validation")
    assert "unlabeled, train+unlabeled" in message


def test_unknown_dataset_and_bad_image_size():
    assert "cifar10" in user_error(build_dataset, "cifar11")
    assert "positive integer" in user_error(build_dataset, "digits", image_size=0)
    assert "num_classes" in user_error(build_dataset, "digits", num_classes=3)


@pytest.mark.parametrize("name", FILE_DATASETS)
def test_missing_root_says_what_to_pass(name):
    assert "--data-root" in user_error(build_dataset, name)


@pytest.mark.parametrize("name", FILE_DATASETS)
def test_missing_files_name_the_expected_path(name, tmp_path):
    message = user_error(build_dataset, name, root=tmp_path)
    assert str(tmp_path) in message and "not found" in message


# -------------------------------------------------------------------------------------- digits


def test_digits_splits_and_pixels():
    from sklearn.datasets import load_digits

    pixels, labels = load_digits(return_X_y=True)
    train = build_dataset("digits")
    test = build_dataset("digits", split="test")
    both = build_dataset("digits", split="train+test")
    assert (len(train), len(test), len(both)) == (1438, 359, 1797)
    assert isinstance(both, TensorImageDataset) and both.in_memory
    sample = check_sample(test, 0, (1, 8, 8))
    expected = np.round(pixels[1438].reshape(8, 8) * 255 / 16)
    assert np.array_equal(sample["image"][0].numpy(), expected)
    assert sample["label"] == labels[1438]
    assert np.array_equal(both.labels, labels)
    assert both.images.max() == 255 and both.num_classes == 10


def test_in_memory_resize():
    dataset = build_dataset("digits", image_size=16)
    assert dataset.images.shape == (1438, 1, 16, 16) and dataset.images.dtype == torch.uint8


# ------------------------------------------------------------------------------- MNIST family


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("folder", ["MNIST", None])
def test_mnist_idx_round_trip(tmp_path, compress, folder):
    written = write_mnist(tmp_path, compress=compress, folder=folder)
    test = build_dataset("mnist", root=tmp_path, split="test")
    images, labels = written["test"]
    assert torch.equal(test.images, torch.from_numpy(images))
    assert np.array_equal(test.labels, labels)
    check_sample(test, 3, (1, 28, 28))
    both = build_dataset("mnist", root=str(tmp_path), split="train+test")
    assert len(both) == len(written["train"][0]) + len(images)
    assert np.array_equal(both.labels[-len(labels) :], labels)


def test_fashion_mnist_written_layout(tmp_path):
    written = write_fashion_mnist(tmp_path)
    train = build_dataset("fashion-mnist", root=tmp_path)
    assert torch.equal(train.images, torch.from_numpy(written["train"][0]))
    assert train.class_names[9] == "Ankle boot"


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_without_root():
    train = build_dataset("fashion-mnist")
    test = build_dataset("fashion-mnist", split="test")
    assert train.images.shape == (60000, 1, 28, 28) and len(test) == 10000
    assert train.labels[0] == 9  # the first training image is an ankle boot
    assert np.bincount(train.labels).tolist() == [6000] * 10
    scaled = train.images.float() / 255
    spec = DATASETS.get("fashion-mnist")
    assert scaled.mean().item() == pytest.approx(spec.mean[0], abs=1e-3)
    assert scaled.std().item() == pytest.approx(spec.std[0], abs=1e-3)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_idx_names_the_file(tmp_path, suffix):
    write_mnist(tmp_path, folder=None)
    path = tmp_path / f"t10k-images-idx3-ubyte{suffix}"
    whole = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    path.write_bytes(gzip.compress(whole)[:-40] if suffix else whole[:-5])
    message = user_error(build_dataset, "mnist", root=tmp_path, split="test")
    assert str(path) in message and "truncated" in message


def test_idx_magic_number_is_checked(tmp_path):
    path = write_idx(tmp_path / "x-idx1-ubyte", np.arange(5, dtype=np.uint8))
    assert read_idx(path).tolist() == [0, 1, 2, 3, 4]
    path.write_bytes(b"\x00\x00\x0d\x01" + path.read_bytes()[4:])  # float data: unsupported
    assert "magic" in user_error(read_idx, path)


# ---------------------------------------------------------------------------------------- USPS


def test_usps_round_trip(tmp_path):
    written = write_usps(tmp_path)
    both = build_dataset("usps", root=tmp_path, split="train+test")
    images = np.concatenate([written["train"][0], written["test"][0]])
    assert torch.equal(both.images, torch.from_numpy(images))
    assert np.array_equal(both.labels[:20], written["train"][1])
    check_sample(both, 0, (1, 16, 16))


# --------------------------------------------------------------------------------------- CIFAR


def test_cifar10_round_trip_and_known_pixel(tmp_path):
    written = write_cifar10(tmp_path)
    train = build_dataset("cifar10", root=tmp_path)
    images, labels = written["train"]
    assert train.images.shape == (10, 3, 32, 32)
    assert torch.equal(train.images, torch.from_numpy(images))
    assert np.array_equal(train.labels, labels)
    assert int(train[7]["image"][2, 5, 30]) == images[7, 2, 5, 30]  # blue plane, row 5, col 30
    assert train.class_names[0] == "airplane" and train.num_classes == 10
    both = build_dataset("cifar10", root=tmp_path / "cifar-10-batches-py", split="train+test")
    assert len(both) == 15


def test_cifar_accepts_python3_pickles_with_bytes_keys(tmp_path):
    written = write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    images, labels = written["test"]
    entry = {b"data": images.reshape(len(images), -1), b"labels": labels.tolist()}
    path.write_bytes(pickle.dumps(entry))
    test = build_dataset("cifar10", root=tmp_path, split="test")
    assert torch.equal(test.images, torch.from_numpy(images))


def test_cifar_corrupt_batch_names_the_file(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    assert str(path) in user_error(build_dataset, "cifar10", root=tmp_path)


def test_cifar100_uses_coarse_labels(tmp_path):
    written = write_cifar100(tmp_path, n_train=30)
    train = build_dataset("cifar100-20", root=tmp_path)
    assert np.array_equal(train.labels, written["train"][1])
    assert train.num_classes == 20 and train.class_names[-1] == "vehicles_2"
    test = build_dataset("cifar100-20", root=tmp_path, split="test")
    assert torch.equal(test.images, torch.from_numpy(written["test"][0]))


def test_download_goes_through_torchvision_then_own_loader(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_cifar10(root, download=False, **kwargs):
        calls.append((root, download))
        write_cifar10(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    dataset = build_dataset("cifar10", root=tmp_path, split="test", download=True)
    assert calls == [(str(tmp_path), True)] and len(dataset) == 5
    build_dataset("cifar10", root=tmp_path, split="test", download=True)
    assert len(calls) == 1  # files present: nothing fetched


def test_download_failure_is_a_user_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    message = user_error(build_dataset, "mnist", root=tmp_path, download=True)
    assert "network unreachable" in message and "yann.lecun.com" in message
    assert "cannot be downloaded" in user_error(
        build_dataset, "imagenet10", root=tmp_path, download=True
    )


# -------------------------------------------------------------------------------------- STL-10


def test_stl10_labelled_splits_in_memory(tmp_path):
    written = write_stl10(tmp_path)
    train = build_dataset("stl10", root=tmp_path)
    images, labels = written["train"]
    assert isinstance(train, TensorImageDataset) and train.images.shape == (6, 3, 96, 96)
    assert torch.equal(train.images, torch.from_numpy(images))
    assert np.array_equal(train.labels, labels)
    # column-major storage: the file holds (c, x, y); the loader must return (c, y, x)
    raw = np.fromfile(tmp_path / "stl10_binary" / "train_X.bin", dtype=np.uint8)
    assert int(train[0]["image"][1, 3, 70]) == raw[96 * 96 + 70 * 96 + 3]
    both = build_dataset("stl10", root=tmp_path, split="train+test", image_size=32)
    assert both.images.shape == (10, 3, 32, 32)


def test_stl10_unlabeled_splits_are_memory_mapped(tmp_path):
    written = write_stl10(tmp_path)
    unlabeled = build_dataset("stl10", root=tmp_path, split="unlabeled")
    assert not unlabeled.in_memory and unlabeled.labels is None and len(unlabeled) == 5
    sample = check_sample(unlabeled, 4, (3, 96, 96))
    assert sample["label"] == -1
    assert np.array_equal(sample["image"].numpy(), written["unlabeled"][0][4])
    mixed = build_dataset("stl10", root=tmp_path, split="train+unlabeled", image_size=48)
    assert len(mixed) == 11 and mixed.num_classes == 10
    assert mixed.labels.tolist() == written["train"][1].tolist() + [-1] * 5
    everything = build_dataset("stl10", root=tmp_path, split="train+test+unlabeled")
    assert everything.labels.tolist() == (
        written["train"][1].tolist() + written["test"][1].tolist() + [-1] * 5
    )
    assert np.array_equal(everything[6]["image"].numpy(), written["test"][0][0])
    copy = pickle.loads(pickle.dumps(mixed))  # what DataLoader workers receive
    assert torch.equal(copy[10]["image"], mixed[10]["image"])
    assert check_sample(copy, 10, (3, 48, 48))["label"] == -1


def test_stl10_truncated_binary(tmp_path):
    write_stl10(tmp_path)
    path = tmp_path / "stl10_binary" / "unlabeled_X.bin"
    path.write_bytes(path.read_bytes()[:-1])
    assert str(path) in user_error(build_dataset, "stl10", root=tmp_path, split="unlabeled")


# ----------------------------------------------------------------------------- ImageNet family


def test_imagenet10_tree(tmp_path):
    written = write_imagenet10(tmp_path, splits=("train", "val"))
    train = build_dataset("imagenet10", root=tmp_path)
    assert isinstance(train, FileImageDataset) and not train.in_memory
    assert train.paths == written["train"][0]
    assert np.array_equal(train.labels, written["train"][1]) and train.num_classes == 10
    assert train.class_names[0] == "n02056570"
    check_sample(train, 19, (3, 224, 224))
    both = build_dataset("imagenet10", root=tmp_path, split="train+test", image_size=32)
    assert len(both) == 40 and check_sample(both, 39, (3, 32, 32))["label"] == 9


def test_imagenet_missing_class_and_val(tmp_path):
    write_imagenet_dogs(tmp_path, n_per_class=1)
    assert build_dataset("imagenet-dogs", root=tmp_path).num_classes == 15
    assert "val" in user_error(build_dataset, "imagenet-dogs", root=tmp_path, split="test")
    for wnid in ("n02099601", "n02112137"):
        for path in (tmp_path / "train" / wnid).iterdir():
            path.unlink()
        (tmp_path / "train" / wnid).rmdir()
    message = user_error(build_dataset, "imagenet-dogs", root=tmp_path)
    assert "n02099601 n02112137" in message and "n02085936" not in message


def test_tiny_imagenet(tmp_path):
    written = write_tiny_imagenet(tmp_path)
    train = build_dataset("tiny-imagenet", root=tmp_path)
    assert train.paths == written["train"][0] and train.num_classes == 5
    assert np.array_equal(train.labels, written["train"][1])
    test = build_dataset("tiny-imagenet", root=tmp_path / "tiny-imagenet-200", split="test")
    assert test.paths == written["test"][0]
    assert np.array_equal(test.labels, written["test"][1])
    check_sample(test, 0, (3, 64, 64))


# -------------------------------------------------------------------------------------- folder


def test_folder_decodes_every_mode(tmp_path):
    files = write_image_folder(tmp_path)
    dataset = build_dataset("folder", root=tmp_path)
    assert dataset.paths == sorted(files.values()) and dataset.labels is None
    assert dataset.num_classes is None
    for index in range(len(dataset)):
        assert check_sample(dataset, index, (3, 96, 96))["label"] == -1
    by_name = {path: dataset[i]["image"] for i, path in enumerate(dataset.paths)}
    rotated = by_name[files["exif_rotated"]].float()
    assert rotated[0, :10].mean() > 200 and rotated[2, :10].mean() < 50  # red on top
    assert rotated[2, -10:].mean() > 200 and rotated[0, -10:].mean() < 50  # blue below
    assert by_name[files["rgba_png"]].min() == 255  # transparent -> white
    assert by_name[files["sixteen_bit_png"]].unique().tolist() == [128]  # scaled, not clipped
    grey = by_name[files["grey_png"]]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_folder_options_and_loader(tmp_path):
    write_image_folder(tmp_path)
    dataset = build_dataset("folder", root=tmp_path, image_size=20, channels=1)
    check_sample(dataset, 0, (1, 20, 20))
    batch = next(iter(DataLoader(dataset, batch_size=4, num_workers=0)))
    assert batch["image"].shape == (4, 1, 20, 20) and batch["index"].tolist() == [0, 1, 2, 3]
    assert pickle.loads(pickle.dumps(dataset)).paths == dataset.paths


def test_folder_errors(tmp_path):
    assert "no readable images found" in user_error(build_dataset, "folder", root=tmp_path)
    assert "does not exist" in user_error(build_dataset, "folder", root=tmp_path / "nope")
    files = write_image_folder(tmp_path, broken=True)
    dataset = build_dataset("folder", root=tmp_path)
    index = dataset.paths.index(files["fake_png"])
    assert str(files["fake_png"]) in user_error(dataset.__getitem__, index)


def test_scan_images_lists_unreadable_files(tmp_path):
    files = write_image_folder(tmp_path, broken=True)
    readable, skipped = scan_images(tmp_path, decode=True)
    assert {path for path, _ in skipped} == {files["fake_png"], files["truncated_jpeg"]}
    assert all(reason for _, reason in skipped)
    assert readable == sorted(set(files.values()) - {path for path, _ in skipped})
    _, quick = scan_images(tmp_path)
    assert files["fake_png"] in {path for path, _ in quick}


def test_scan_images_reads_gifs_lists_heic_and_leaves_out_hidden_files_links_and_outputs(
    tmp_path,
):
    from PIL import Image

    frames = [Image.new("P", (12, 12), color) for color in (3, 200)]
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (12, 12), "red").save(tmp_path / "photo.png")
    (tmp_path / "phone.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (tmp_path / "._photo.png").write_bytes(b"AppleDouble resource fork")
    (tmp_path / ".thumbnails").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / ".thumbnails" / "photo.png")
    (tmp_path / "run" / "clusters").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "run" / "clusters" / "01.png")
    (tmp_path / "same.png").symlink_to(tmp_path / "photo.png")  # one image, two names
    (tmp_path / "alias1.png").symlink_to(tmp_path / "run" / "clusters" / "01.png")
    (tmp_path / "alias2.png").symlink_to(tmp_path / "run" / "clusters" / "01.png")
    readable, skipped = scan_images(tmp_path, decode=True, exclude=tmp_path / "run")
    assert readable == [tmp_path / "alias1.png", tmp_path / "moving.gif", tmp_path / "photo.png"]
    assert skipped == [
        (tmp_path / "phone.HEIC", ".HEIC images cannot be read; convert them to JPEG or PNG")
    ]
    gif = FileImageDataset("gif", [tmp_path / "moving.gif"], 8)[0]["image"]
    assert gif.shape == (3, 8, 8)
    assert scan_images(tmp_path)[0][-1] == tmp_path / "run" / "clusters" / "01.png"
    assert tmp_path / "alias1.png" not in scan_images(tmp_path)[0]  # its file is listed


def test_scan_images_decodes_each_file_version_once(tmp_path, monkeypatch):
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (12, 12), (i * 80, 0, 0)).save(tmp_path / f"{i}.png")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda path, *a, **k: opened.append(path) or real_open(path))
    first = scan_images(tmp_path, decode=True)
    assert len(opened) == 6  # verified, then decoded
    opened.clear()
    assert scan_images(tmp_path, decode=True) == first and opened == []  # remembered
    whole = (tmp_path / "1.png").read_bytes()
    (tmp_path / "1.png").write_bytes(whole[: len(whole) // 2])  # changed since: checked again
    readable, skipped = scan_images(tmp_path, decode=True)
    assert set(opened) == {str(tmp_path / "1.png")}
    assert readable == [tmp_path / "0.png", tmp_path / "2.png"]
    assert [path for path, _ in skipped] == [tmp_path / "1.png"]


# ----------------------------------------------------------------------------------- synthetic


def clustering_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    counts = np.zeros((predicted.max() + 1, labels.max() + 1))
    np.add.at(counts, (predicted, labels), 1)
    rows, cols = linear_sum_assignment(-counts)
    return counts[rows, cols].sum() / len(labels)


def test_synthetic_is_seeded_and_clusterable_but_not_trivial():
    first = build_dataset("synthetic", n=400, seed=3)
    again = build_dataset("synthetic", n=400, seed=3)
    other = build_dataset("synthetic", n=400, seed=4)
    assert torch.equal(first.images, again.images) and not torch.equal(first.images, other.images)
    assert (
        first.images.shape == (400, 3, 32, 32) and np.bincount(first.labels).tolist() == [40] * 10
    )
    test = build_dataset("synthetic", split="test", n=400, seed=3)
    assert not torch.equal(first.images, test.images)
    pixels = first.images.reshape(400, -1).float().numpy()
    predicted = KMeans(10, n_init=5, random_state=0).fit_predict(pixels)
    accuracy = clustering_accuracy(first.labels, predicted)
    assert 0.3 < accuracy < 0.98
    grey = build_dataset("synthetic", split="train+test", image_size=16, n=50, channels=1)
    assert grey.images.shape == (100, 1, 16, 16) and grey.num_classes == 10

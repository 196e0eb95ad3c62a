"""Writers of tiny datasets in their REAL on-disk formats, for tests and smoke runs.

Each writer puts files under ``root`` exactly where ``--data-root root`` expects them and
returns what it wrote, so a test can check a round trip::

    from tests.data_formats import write_cifar10
    written = write_cifar10(tmp_path)          # {"train": (images, labels), "test": (...)}
    dataset = build_dataset("cifar10", root=tmp_path, split="test")

Images are returned as uint8 arrays (N, C, H, W) and labels as int64 arrays (0-based, as the
loaders return them). File-tree writers return paths instead of pixels (JPEG is lossy).
"""

from __future__ import annotations

import bz2
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from cluster_ssl.data.imagenet import IMAGENET10_WNIDS, IMAGENET_DOGS_WNIDS

Arrays = tuple[np.ndarray, np.ndarray]
STL10_CLASSES = (
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
)


def random_images(rng: np.random.Generator, n: int, channels: int, side: int) -> np.ndarray:
    """``n`` random uint8 images (n, channels, side, side)."""
    return rng.integers(0, 256, size=(n, channels, side, side), dtype=np.uint8)


# ---------------------------------------------------------------------------- IDX (MNIST family)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (magic 0x0000080<ndim>, big-endian dims); gzip if .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def write_mnist(
    root: Path,
    n_train: int = 20,
    n_test: int = 10,
    seed: int = 0,
    compress: bool = False,
    folder: str | None = "MNIST",
) -> dict[str, Arrays]:
    """MNIST IDX files in ``root/<folder>/raw`` (torchvision's layout) or ``root`` (folder=None)."""
    rng = np.random.default_rng(seed)
    target = root / folder / "raw" if folder else root
    ext = ".gz" if compress else ""
    written = {}
    for part, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = random_images(rng, n, 1, 28)
        labels = rng.integers(0, 10, size=n).astype(np.int64)
        write_idx(target / f"{prefix}-images-idx3-ubyte{ext}", images[:, 0])
        write_idx(target / f"{prefix}-labels-idx1-ubyte{ext}", labels.astype(np.uint8))
        written[part] = (images, labels)
    return written


def write_fashion_mnist(
    root: Path,
    n_train: int = 20,
    n_test: int = 10,
    seed: int = 0,
    compress: bool = True,
    folder: str | None = "FashionMNIST",
) -> dict[str, Arrays]:
    """Fashion-MNIST IDX files, gzipped by default (as Debian's package ships them)."""
    return write_mnist(root, n_train, n_test, seed, compress, folder)


# ---------------------------------------------------------------------------------------- USPS


def write_usps(root: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, Arrays]:
    """``usps.bz2``, ``usps.t.bz2``: lines ``label 1:v ... 256:v``, labels 1..10, v in [-1, 1]."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for part, name, n in (("train", "usps.bz2", n_train), ("test", "usps.t.bz2", n_test)):
        images = random_images(rng, n, 1, 16)
        labels = rng.integers(0, 10, size=n).astype(np.int64)
        values = images.reshape(n, -1) / 255.0 * 2.0 - 1.0
        lines = [
            f"{label + 1} " + " ".join(f"{i}:{v:.6f}" for i, v in enumerate(row, 1))
            for label, row in zip(labels, values, strict=True)
        ]
        (root / name).write_bytes(bz2.compress(("\n".join(lines) + "\n").encode("ascii")))
        written[part] = (images, labels)
    return written


# --------------------------------------------------------------------------------------- CIFAR


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Pickles ``bytes`` as Python 2 ``str`` (BINSTRING opcodes), as the real CIFAR files are.

    Loaded with ``encoding="latin1"`` (torchvision) their keys are ``str``; loaded with
    ``encoding="bytes"`` they are ``bytes`` -- exactly like the files from the CIFAR site.
    """

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def write_py2_pickle(path: Path, obj: object) -> Path:
    """Pickle ``obj`` (protocol 2, bytes as Python 2 str) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        _Py2Pickler(handle, protocol=2).dump(obj)
    return path


def _cifar_entry(batch_label: str, images: np.ndarray, labels: dict[str, np.ndarray]) -> dict:
    entry = {
        b"batch_label": batch_label.encode(),
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"image_{i:05d}.png".encode() for i in range(len(images))],
    }
    entry.update({key.encode(): [int(v) for v in values] for key, values in labels.items()})
    return entry


def write_cifar10(
    root: Path, n_train: int = 10, n_test: int = 5, seed: int = 0
) -> dict[str, Arrays]:
    """``root/cifar-10-batches-py/`` with data_batch_1..5, test_batch and batches.meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    images = random_images(rng, n_train + n_test, 3, 32)
    labels = rng.integers(0, 10, size=n_train + n_test).astype(np.int64)
    chunks = np.array_split(np.arange(n_train), 5)
    for number, chunk in enumerate(chunks, 1):
        entry = _cifar_entry(
            f"training batch {number} of 5", images[chunk], {"labels": labels[chunk]}
        )
        write_py2_pickle(folder / f"data_batch_{number}", entry)
    test = slice(n_train, None)
    entry = _cifar_entry("testing batch 1 of 1", images[test], {"labels": labels[test]})
    write_py2_pickle(folder / "test_batch", entry)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_py2_pickle(
        folder / "batches.meta",
        {b"num_cases_per_batch": 10000, b"label_names": names, b"num_vis": 3072},
    )
    return {
        "train": (images[:n_train], labels[:n_train]),
        "test": (images[test], labels[test]),
    }


def write_cifar100(
    root: Path, n_train: int = 10, n_test: int = 5, seed: int = 0
) -> dict[str, Arrays]:
    """``root/cifar-100-python/`` with train, test (fine_labels, coarse_labels) and meta.

    Returns the COARSE labels (what ``cifar100-20`` loads).
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    fine_to_coarse = np.arange(100) % 20
    written = {}
    for part, n in (("train", n_train), ("test", n_test)):
        images = random_images(rng, n, 3, 32)
        fine = rng.integers(0, 100, size=n).astype(np.int64)
        coarse = fine_to_coarse[fine]
        labels = {"fine_labels": fine, "coarse_labels": coarse}
        write_py2_pickle(folder / part, _cifar_entry(part, images, labels))
        written[part] = (images, coarse)
    meta = {
        b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
    }
    write_py2_pickle(folder / "meta", meta)
    return written


# -------------------------------------------------------------------------------------- STL-10


def write_stl10(
    root: Path, n_train: int = 6, n_test: int = 4, n_unlabeled: int = 5, seed: int = 0
) -> dict[str, Arrays]:
    """``root/stl10_binary/`` with {train,test,unlabeled}_X.bin (3x96x96, column-major) and
    {train,test}_y.bin (labels 1..10). Unlabelled images come back with labels -1."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for part, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        images = random_images(rng, n, 3, 96)
        (folder / f"{part}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        labels = np.full(n, -1, dtype=np.int64)
        if part != "unlabeled":
            labels = rng.integers(0, 10, size=n).astype(np.int64)
            (folder / f"{part}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
        written[part] = (images, labels)
    (folder / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    return written


# ------------------------------------------------------------------------- ImageNet-style trees


def save_random_image(path: Path, rng: np.random.Generator, size: tuple[int, int]) -> Path:
    """Save a random RGB image of ``size`` (width, height); the format follows the suffix."""
    width, height = size
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG" if path.suffix.upper() == ".JPEG" else None)
    return path


def write_imagenet_tree(
    root: Path,
    wnids: list[str],
    n_per_class: int = 2,
    splits: tuple[str, ...] = ("train",),
    size: tuple[int, int] = (48, 40),
    seed: int = 0,
) -> dict[str, tuple[list[Path], np.ndarray]]:
    """``root/<train|val>/<wnid>/<wnid>_<i>.JPEG``; returns split -> (paths, labels), with
    "val" reported as "test" (the name the loaders use)."""
    rng = np.random.default_rng(seed)
    written = {}
    for split in splits:
        paths, labels = [], []
        for label, wnid in enumerate(wnids):
            for i in range(n_per_class):
                paths.append(save_random_image(root / split / wnid / f"{wnid}_{i}.JPEG", rng, size))
                labels.append(label)
        written["test" if split == "val" else split] = (paths, np.array(labels, dtype=np.int64))
    return written


def write_imagenet10(
    root: Path, n_per_class: int = 2, splits: tuple[str, ...] = ("train",), seed: int = 0
) -> dict[str, tuple[list[Path], np.ndarray]]:
    """An ImageFolder tree with the ten ImageNet-10 wnids."""
    return write_imagenet_tree(root, list(IMAGENET10_WNIDS), n_per_class, splits, seed=seed)


def write_imagenet_dogs(
    root: Path, n_per_class: int = 2, splits: tuple[str, ...] = ("train",), seed: int = 0
) -> dict[str, tuple[list[Path], np.ndarray]]:
    """An ImageFolder tree with the fifteen ImageNet-Dogs wnids."""
    return write_imagenet_tree(root, list(IMAGENET_DOGS_WNIDS), n_per_class, splits, seed=seed)


def write_tiny_imagenet(
    root: Path, num_classes: int = 5, n_per_class: int = 2, n_val: int = 6, seed: int = 0
) -> dict[str, tuple[list[Path], np.ndarray]]:
    """``root/tiny-imagenet-200/`` with wnids.txt, train/<wnid>/images/*.JPEG (64x64),
    train/<wnid>/<wnid>_boxes.txt, val/images/*.JPEG and val/val_annotations.txt."""
    rng = np.random.default_rng(seed)
    folder = root / "tiny-imagenet-200"
    wnids = [f"n{1443537 + 7919 * k:08d}" for k in range(num_classes)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")  # real file is unsorted
    train_paths, train_labels = [], []
    for label, wnid in enumerate(sorted(wnids)):
        names = [f"{wnid}_{i}.JPEG" for i in range(n_per_class)]
        for name in names:
            train_paths.append(
                save_random_image(folder / "train" / wnid / "images" / name, rng, (64, 64))
            )
            train_labels.append(label)
        boxes = "".join(f"{name}\t0\t0\t63\t63\n" for name in names)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text(boxes)
    val_labels = rng.integers(0, num_classes, size=n_val).astype(np.int64)
    val_paths = [
        save_random_image(folder / "val" / "images" / f"val_{i}.JPEG", rng, (64, 64))
        for i in range(n_val)
    ]
    rows = [
        f"{path.name}\t{sorted(wnids)[label]}\t0\t0\t63\t63\n"
        for path, label in zip(val_paths, val_labels, strict=True)
    ]
    (folder / "val" / "val_annotations.txt").write_text("".join(rows))
    order = np.argsort([path.name for path in val_paths], kind="stable")
    return {
        "train": (train_paths, np.array(train_labels, dtype=np.int64)),
        "test": ([val_paths[i] for i in order], val_labels[order]),
    }


# ------------------------------------------------------------------------- a folder of photos


def write_image_folder(root: Path, seed: int = 0, broken: bool = False) -> dict[str, Path]:
    """A folder of images in every supported format and awkward mode, some in a subfolder.

    Keys name what each file exercises: ``rgb_jpeg``, ``exif_rotated`` (40x20 stored, left half
    red / right half blue, EXIF orientation 6 so it displays 20x40 with red on TOP),
    ``grey_png``, ``rgba_png`` (fully transparent black -> white), ``palette_png``,
    ``sixteen_bit_png`` (uniform 32896/65535 -> grey 128), ``webp``, ``bmp``, ``tiff``,
    ``cmyk_jpeg``, ``nested_png`` (in ``sub/deeper/``). A ``notes.txt`` is always written
    (not an image). ``broken=True`` adds ``truncated_jpeg`` and ``fake_png`` (text named .png).
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rgb = rng.integers(0, 256, size=(30, 50, 3), dtype=np.uint8)
    files = {
        "rgb_jpeg": _save(Image.fromarray(rgb), root / "a_rgb.jpg"),
        "exif_rotated": _save_exif_rotated(root / "b_rotated.jpeg"),
        "grey_png": _save(Image.fromarray(rgb[..., 0], "L"), root / "c_grey.png"),
        "rgba_png": _save(Image.new("RGBA", (24, 24), (0, 0, 0, 0)), root / "d_rgba.png"),
        "palette_png": _save(Image.fromarray(rgb).convert("P"), root / "e_palette.png"),
        "sixteen_bit_png": _save(
            Image.fromarray(np.full((20, 20), 32896, dtype=np.uint16)), root / "f_16bit.png"
        ),
        "webp": _save(Image.fromarray(rgb), root / "g_image.webp"),
        "bmp": _save(Image.fromarray(rgb), root / "h_image.bmp"),
        "tiff": _save(Image.fromarray(rgb), root / "i_image.TIFF"),
        "cmyk_jpeg": _save(Image.fromarray(rgb).convert("CMYK"), root / "j_cmyk.jpg"),
        "nested_png": _save(Image.fromarray(rgb), root / "sub" / "deeper" / "k_nested.png"),
    }
    (root / "notes.txt").write_text("not an image\n")
    if broken:
        whole = (root / "a_rgb.jpg").read_bytes()
        files["truncated_jpeg"] = root / "x_truncated.jpg"
        files["truncated_jpeg"].write_bytes(whole[: len(whole) // 2])
        files["fake_png"] = root / "y_fake.png"
        files["fake_png"].write_text("this is not a png\n")
    return files


def _save(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _save_exif_rotated(path: Path) -> Path:
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    image.save(path, exif=exif, quality=95)
    return path

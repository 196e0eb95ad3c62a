"""Fuzzed dataset files: every broken file ends in one clear UserError, never a traceback.

Tiny valid datasets are written in their real on-disk formats (``tests/data_formats.py``),
then, with a fixed seed, mutated -- truncated at random points, random bytes flipped, header
lengths overwritten with huge values, emptied, grown into huge sparse files, replaced by a
directory -- and loaded through ``build_dataset`` as users load them (file-backed datasets
are also read item by item). A mutated file may still load; if it does not, the failure must
be a :class:`UserError` whose message is one line and names the broken file.
"""

from __future__ import annotations

import bz2
import gzip
import os
import pickle
import pickletools
import shutil
import struct
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from cluster_ssl.cli import main
from cluster_ssl.data import build_dataset
from cluster_ssl.runtime.errors import UserError
from tests.data_formats import (
    write_cifar10,
    write_cifar100,
    write_fashion_mnist,
    write_image_folder,
    write_mnist,
    write_stl10,
    write_usps,
)

# Fault injection: ``pytest -m faults`` runs only such tests, ``-m "not faults"`` skips them.
pytestmark = pytest.mark.faults

SEED = 20240917
HUGE_32 = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x40000000, 0x10000000)
SPARSE_SIZE = 3 << 30  # a 3 GiB sparse file: nothing is written, but the loader must not read it
STL_RECORD = 3 * 96 * 96

Mutation = Callable[[bytes, np.random.Generator], bytes]


# ------------------------------------------------------------------------------- byte mutations


def truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, max(len(data), 1)))]


def flip(data: bytes, rng: np.random.Generator, span: int | None = None) -> bytes:
    """XOR 1..16 bytes (within the first ``span`` bytes when given) with random non-zero bits."""
    if not data:
        return data
    out = bytearray(data)
    limit = min(len(out), span or len(out))
    for position in rng.integers(0, limit, size=int(rng.integers(1, 17))):
        out[position] ^= int(rng.integers(1, 256))
    return bytes(out)


def flip_header(data: bytes, rng: np.random.Generator) -> bytes:
    return flip(data, rng, span=64)


def garbage(data: bytes, rng: np.random.Generator) -> bytes:
    return rng.integers(0, 256, size=int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()


def append(data: bytes, rng: np.random.Generator) -> bytes:
    return data + garbage(data, rng)


def overwrite(data: bytes, position: int, value: bytes) -> bytes:
    return data[:position] + value + data[position + len(value) :]


def huge_u32(rng: np.random.Generator, byteorder: str = ">") -> bytes:
    value = int(rng.choice(HUGE_32)) if rng.random() < 0.8 else int(rng.integers(1 << 20, 1 << 32))
    return struct.pack(f"{byteorder}I", value)


def idx_huge(data: bytes, rng: np.random.Generator) -> bytes:
    """A dimension of the IDX header made huge, or the number of dimensions."""
    if len(data) < 8 or rng.random() < 0.2:
        return overwrite(data, 3, bytes([int(rng.choice([0xFF, 0x7F, 0x40, 4, 2]))]))
    dim = int(rng.integers(0, max(1, min(data[3], (len(data) - 4) // 4))))
    return overwrite(data, 4 + 4 * dim, huge_u32(rng))


_PICKLE_ARGS = {"BINSTRING", "BINUNICODE", "BINBYTES", "BININT", "LONG_BINPUT", "LONG_BINGET"}
_PICKLE_SHORT = {"SHORT_BINSTRING", "SHORT_BINBYTES", "SHORT_BINUNICODE", "BININT1", "BINPUT"}


def pickle_huge(data: bytes, rng: np.random.Generator) -> bytes:
    """A length or integer argument of a pickle opcode made huge (the arrays' shapes, the
    strings' byte counts, memo indices), or a short string turned into a LONG4/BINBYTES8."""
    try:
        ops = [(op.name, position) for op, _, position in pickletools.genops(data)]
    except Exception:  # already broken: hit a random spot
        ops = []
    long_args = [position for name, position in ops if name in _PICKLE_ARGS]
    short_args = [position for name, position in ops if name in _PICKLE_SHORT | {"BININT2"}]
    choice = rng.random()
    if long_args and choice < 0.6:
        position = int(rng.choice(long_args))
        return overwrite(data, position + 1, huge_u32(rng, "<"))
    if short_args and choice < 0.8:
        position = int(rng.choice(short_args))
        return overwrite(data, position + 1, b"\xff\xff")
    if short_args:
        position = int(rng.choice(short_args))
        opcode = rng.choice(
            [b"\x8b", b"\x8e", b"\x8d", b"\x95"]
        )  # LONG4 BINBYTES8 BINUNICODE8 FRAME
        width = 4 if opcode == b"\x8b" else 8
        length = (1 << (8 * width - 1)) - 1 if rng.random() < 0.5 else 1 << (6 * width)
        return overwrite(data, position, opcode + length.to_bytes(width, "little"))
    return overwrite(data, int(rng.integers(0, max(len(data) - 4, 1))), huge_u32(rng, "<"))


def usps_huge(data: bytes, rng: np.random.Generator) -> bytes:
    """A label, pixel index or value of the libsvm text made huge, infinite or not a number."""
    tokens = data.split(b" ")
    if not tokens:
        return data
    position = int(rng.integers(0, len(tokens)))
    value = rng.choice([b"1e308", b"inf", b"-inf", b"nan", b"99999999999999999999", b"0"])
    if b":" in tokens[position] and rng.random() < 0.5:
        index, _, rest = tokens[position].partition(b":")
        tokens[position] = value + b":" + rest if rng.random() < 0.5 else index + b":" + value
    else:
        tokens[position] = (
            value + tokens[position][-1:] if tokens[position][-1:] == b"\n" else value
        )
    return b" ".join(tokens)


def image_huge(data: bytes, rng: np.random.Generator) -> bytes:
    """The declared width/height of a PNG (with its checksum fixed), BMP or JPEG made huge."""
    if data.startswith(b"\x89PNG") and len(data) > 33:
        ihdr = overwrite(data[12:29], 4 + 4 * int(rng.integers(0, 2)), huge_u32(rng))
        return data[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]
    if data.startswith(b"BM") and len(data) > 26:
        return overwrite(data, 18 + 4 * int(rng.integers(0, 2)), huge_u32(rng, "<"))
    sof = data.find(b"\xff\xc0")
    if data.startswith(b"\xff\xd8") and sof > 0:
        return overwrite(data, sof + 5 + 2 * int(rng.integers(0, 2)), b"\xff\xff")
    return overwrite(data, int(rng.integers(0, min(len(data), 64))), huge_u32(rng))


def png_chunk_flip(data: bytes, rng: np.random.Generator) -> bytes:
    """Bytes flipped inside one chunk of a PNG whose checksum is then fixed, so the decoder
    (not the checksum test) meets them; other formats get plain flips."""
    chunks, position = [], 8
    while data.startswith(b"\x89PNG") and position + 12 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        chunks.append((position, length))
        position += 12 + length
    if not chunks:
        return flip(data, rng)
    start, length = chunks[int(rng.integers(0, len(chunks)))]
    body = flip(data[start + 4 : start + 8 + length], rng, span=min(length + 4, 64))
    body = body[:4] + flip(body[4:], rng) if length > 64 and rng.random() < 0.5 else body
    crc = struct.pack(">I", zlib.crc32(body))
    return data[: start + 4] + body + crc + data[start + 12 + length :]


def recompressed(codec, mutation: Mutation) -> Mutation:
    """``mutation`` applied to the decompressed payload, compressed again (a valid archive
    holding broken content)."""

    def mutate(data: bytes, rng: np.random.Generator) -> bytes:
        return codec.compress(mutation(codec.decompress(data), rng))

    mutate.__name__ = f"{codec.__name__}({mutation.__name__})"
    return mutate


# ------------------------------------------------------------------------- formats under test


@dataclass(frozen=True)
class Format:
    """A dataset format: how to write it, which files to break and how to load it."""

    label: str
    write: Callable[[Path], object]
    files: tuple[str, ...]
    loads: tuple[tuple[str, str, dict], ...]
    mutations: tuple[Mutation, ...]
    cases: int
    #: mutations of the file system rather than the bytes (see ``apply``)
    file_mutations: tuple[str, ...] = ("empty", "directory")


def mnist_files(folder: str, ext: str) -> tuple[str, ...]:
    return tuple(
        f"{folder}/raw/{prefix}-{kind}-ubyte{ext}"
        for prefix in ("train", "t10k")
        for kind in ("images-idx3", "labels-idx1")
    )


def write_cifar10_repickled(root: Path) -> None:
    """CIFAR-10 batches re-pickled by Python 3 (bytes keys): at protocol 2, where byte
    strings go through ``_codecs.encode``, and at protocol 5, where arrays go through
    ``numpy._core.numeric._frombuffer``."""
    write_cifar10(root, n_train=10, n_test=4)
    for number, path in enumerate(sorted((root / "cifar-10-batches-py").glob("*_batch*"))):
        entry = pickle.loads(path.read_bytes(), encoding="bytes")
        path.write_bytes(pickle.dumps(entry, protocol=5 if number % 2 else 2))


BASIC = (truncate, flip, flip_header, garbage, append)
CIFAR10_FILES = tuple(
    f"cifar-10-batches-py/{name}"
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
)
FORMATS = {
    "idx": Format(
        "idx (mnist, raw)",
        lambda root: write_mnist(root, n_train=8, n_test=4),
        mnist_files("MNIST", ""),
        (("mnist", "train+test", {}),),
        (*BASIC, idx_huge, idx_huge),
        cases=80,
        file_mutations=("empty", "directory", "sparse"),
    ),
    "idx-gz": Format(
        "idx (fashion-mnist, gzip)",
        lambda root: write_fashion_mnist(root, n_train=8, n_test=4),
        mnist_files("FashionMNIST", ".gz"),
        (("fashion-mnist", "train+test", {}),),
        (
            truncate,
            flip,
            flip_header,
            garbage,
            recompressed(gzip, truncate),
            recompressed(gzip, flip_header),
            recompressed(gzip, idx_huge),
            recompressed(gzip, idx_huge),
        ),
        cases=60,
    ),
    "cifar10": Format(
        "cifar-10 pickles",
        lambda root: write_cifar10(root, n_train=10, n_test=4),
        CIFAR10_FILES,
        (("cifar10", "train+test", {}),),
        (*BASIC, pickle_huge, pickle_huge, pickle_huge),
        cases=70,
        file_mutations=("empty", "directory", "sparse"),
    ),
    "cifar10-py3": Format(
        "cifar-10 pickles re-pickled by python 3",
        write_cifar10_repickled,
        CIFAR10_FILES,
        (("cifar10", "train+test", {}),),
        (*BASIC, pickle_huge, pickle_huge, pickle_huge),
        cases=50,
    ),
    "cifar100": Format(
        "cifar-100 pickles",
        lambda root: write_cifar100(root, n_train=6, n_test=4),
        ("cifar-100-python/train", "cifar-100-python/test"),
        (("cifar100-20", "train+test", {}),),
        (*BASIC, pickle_huge, pickle_huge, pickle_huge),
        cases=40,
    ),
    "stl10": Format(
        "stl-10 binaries",
        lambda root: write_stl10(root, n_train=2, n_test=2, n_unlabeled=2),
        tuple(
            f"stl10_binary/{name}.bin"
            for name in ("train_X", "train_y", "test_X", "test_y", "unlabeled_X")
        ),
        (("stl10", "train+test", {}), ("stl10", "train+unlabeled", {})),
        (truncate, flip, flip_header, garbage, append),
        cases=60,
        file_mutations=("empty", "directory", "sparse", "sparse"),
    ),
    "usps": Format(
        "usps bz2 libsvm",
        lambda root: write_usps(root, n_train=4, n_test=3),
        ("usps.bz2", "usps.t.bz2"),
        (("usps", "train+test", {}),),
        (
            truncate,
            flip,
            garbage,
            recompressed(bz2, truncate),
            recompressed(bz2, flip),
            recompressed(bz2, usps_huge),
            recompressed(bz2, usps_huge),
        ),
        cases=50,
    ),
    "folder": Format(
        "image folder",
        write_image_folder,
        (
            "a_rgb.jpg",
            "b_rotated.jpeg",
            "c_grey.png",
            "d_rgba.png",
            "e_palette.png",
            "f_16bit.png",
            "g_image.webp",
            "h_image.bmp",
            "i_image.TIFF",
            "j_cmyk.jpg",
            "sub/deeper/k_nested.png",
        ),
        (("folder", "train", {"image_size": 16}), ("folder", "train", {"skip_unreadable": True})),
        (truncate, flip, flip_header, garbage, image_huge, image_huge, png_chunk_flip),
        cases=80,
    ),
}


def apply(kind: str | Mutation, path: Path, rng: np.random.Generator) -> str:
    """Break ``path`` in place; returns what was done, for the failure report."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.unlink()
        path.mkdir()
        (path / "inside").write_bytes(b"a directory where a file should be")
    elif kind == "sparse":
        size = SPARSE_SIZE
        if "_X" in path.name:  # a whole number of STL-10 images, so only the size is wrong
            size -= size % STL_RECORD
        os.truncate(path, size)
    else:
        path.write_bytes(kind(path.read_bytes(), rng))
        return kind.__name__
    return kind


def read_everything(dataset) -> None:
    """Touch what training touches: the length and items (when they are read per item, the
    first 64 and the last; all are in memory otherwise)."""
    count = len(dataset)
    lazy = not getattr(dataset, "in_memory", True)
    for index in sorted({*range(min(count, 64) if lazy else 1), count - 1}):
        if index >= 0:
            dataset[index]


@dataclass
class Tally:
    loaded: int = 0
    user_errors: int = 0
    escapes: list[str] = field(default_factory=list)
    by_mutation: Counter = field(default_factory=Counter)


def fuzz(fmt: Format, tmp_path: Path, seed: int) -> Tally:
    rng = np.random.default_rng(seed)
    pristine = tmp_path / "pristine"
    fmt.write(pristine)
    for name, split, options in fmt.loads:  # unbroken, every file loads
        read_everything(build_dataset(name, root=pristine, split=split, **options))
    kinds: list[str | Mutation] = [*fmt.mutations, *fmt.file_mutations]
    tally = Tally()
    for case in range(fmt.cases):
        root = tmp_path / f"case{case}"  # a fresh path: no cache can remember an earlier case
        shutil.copytree(pristine, root)
        target = root / fmt.files[int(rng.integers(0, len(fmt.files)))]
        done = apply(kinds[int(rng.integers(0, len(kinds)))], target, rng)
        tally.by_mutation[done] += 1
        outcome = "loaded"
        for name, split, options in fmt.loads:
            try:
                read_everything(build_dataset(name, root=root, split=split, **options))
            except UserError as error:
                message = str(error)
                if "\n" in message or "\r" in message or str(target) not in message:
                    tally.escapes.append(f"case {case} {done} {target}: unclear {message!r}")
                outcome = "user_error"
            except BaseException as error:  # noqa: B036 -- MemoryError, RecursionError... too
                where = traceback.extract_tb(error.__traceback__)[-1]
                tally.escapes.append(
                    f"case {case} {done} {target.relative_to(root)} ({name} {split}): "
                    f"{type(error).__name__}: {str(error)[:200]} at {where.filename}:{where.lineno}"
                )
                outcome = "escape"
        if outcome == "loaded":
            tally.loaded += 1
        elif outcome == "user_error":
            tally.user_errors += 1
        shutil.rmtree(root)
    return tally


@pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # PIL's notes on the broken images
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("key", list(FORMATS))
def test_mutated_files_load_or_raise_one_clear_user_error(key, tmp_path, capfd):
    fmt = FORMATS[key]
    tally = fuzz(fmt, tmp_path, SEED + list(FORMATS).index(key))
    stray = capfd.readouterr().err  # e.g. what C code prints on stderr, past any exception
    print(
        f"\n{fmt.label}: {fmt.cases} cases, {tally.loaded} loaded, {tally.user_errors} "
        f"UserError, {len(tally.escapes)} escaped; mutations {dict(tally.by_mutation)}"
    )
    assert not tally.escapes, "\n".join(tally.escapes)
    assert not stray
    assert tally.user_errors > fmt.cases // 4  # the mutations do break files


def test_cifar_batches_name_no_other_globals(tmp_path):
    """A pickle naming anything but numpy's array parts is refused before it runs."""
    write_cifar10(tmp_path, n_train=5, n_test=2)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    marker = tmp_path / "ran"

    class Runs:
        def __reduce__(self):
            return os.system, (f"touch '{marker}'",)

    path.write_bytes(pickle.dumps({b"data": Runs(), b"labels": [0]}, protocol=2))
    with pytest.raises(UserError) as caught:
        build_dataset("cifar10", root=tmp_path, split="test")
    message = str(caught.value)
    assert f"{os.system.__module__}.system" in message and str(path) in message
    assert "refused" in message and not marker.exists()


# ----------------------------------------------------------------------------- through the CLI


def break_idx_by_directory(root: Path) -> Path:
    write_fashion_mnist(root, n_train=8, n_test=4)
    path = root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"
    apply("directory", path, np.random.default_rng(0))
    return path


def break_cifar_by_huge_length(root: Path) -> Path:
    write_cifar10(root, n_train=10, n_test=4)
    path = root / "cifar-10-batches-py" / "data_batch_2"
    data = path.read_bytes()
    position = next(p for op, _, p in pickletools.genops(data) if op.name == "BINSTRING")
    path.write_bytes(overwrite(data, position + 1, struct.pack("<I", 0x7FFFFFFF)))
    return path


def break_stl_by_truncation(root: Path) -> Path:
    write_stl10(root, n_train=2, n_test=2, n_unlabeled=2)
    path = root / "stl10_binary" / "train_X.bin"
    path.write_bytes(path.read_bytes()[:-100])
    return path


def break_usps_by_infinite_label(root: Path) -> Path:
    write_usps(root, n_train=4, n_test=3)
    path = root / "usps.bz2"
    lines = bz2.decompress(path.read_bytes()).split(b"\n")
    lines[1] = b"inf" + lines[1][lines[1].index(b" ") :]
    path.write_bytes(bz2.compress(b"\n".join(lines)))
    return path


def break_mnist_labels_by_emptying(root: Path) -> Path:
    write_mnist(root, n_train=8, n_test=4)
    path = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("dataset", "breaks"),
    [
        ("fashion-mnist", break_idx_by_directory),
        ("cifar10", break_cifar_by_huge_length),
        ("stl10", break_stl_by_truncation),
        ("usps", break_usps_by_infinite_label),
        ("mnist", break_mnist_labels_by_emptying),
    ],
)
def test_cli_reports_a_broken_file_on_one_error_line(dataset, breaks, tmp_path, capsys):
    broken = breaks(tmp_path / "data")
    argv = ["train", "dec", "--dataset", dataset, "--data-root", str(tmp_path / "data")]
    code = main([*argv, "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(broken) in lines[0]

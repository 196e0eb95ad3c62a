"""CIFAR-10 and CIFAR-100 (20 coarse superclasses) from the python pickle batches."""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cluster_ssl.data.base import TensorImageDataset
from cluster_ssl.data.common import (
    MIB,
    check_labels,
    describe,
    locate_folder,
    not_found,
    one_line,
    read_file,
    require_root,
    tensor_dataset,
    torchvision_download,
)
from cluster_ssl.runtime.errors import UserError

URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class CifarSource:
    """One CIFAR variant: its folder, batch files per part, label key and class names."""

    name: str
    title: str
    folder: str
    files: dict[str, tuple[str, ...]]
    label_key: str
    class_names: tuple[str, ...]


CIFAR10 = CifarSource(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    files={
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test": ("test_batch",),
    },
    label_key="labels",
    class_names=(
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
)
CIFAR100_20 = CifarSource(
    name="cifar100-20",
    title="CIFAR-100",
    folder="cifar-100-python",
    files={"train": ("train",), "test": ("test",)},
    label_key="coarse_labels",
    class_names=(
        "aquatic_mammals",
        "fish",
        "flowers",
        "food_containers",
        "fruit_and_vegetables",
        "household_electrical_devices",
        "household_furniture",
        "insects",
        "large_carnivores",
        "large_man-made_outdoor_things",
        "large_natural_outdoor_scenes",
        "large_omnivores_and_herbivores",
        "medium_mammals",
        "non-insect_invertebrates",
        "people",
        "reptiles",
        "small_mammals",
        "trees",
        "vehicles_1",
        "vehicles_2",
    ),
)


#: larger than any CIFAR batch (CIFAR-100's ``train``, the largest, holds 161 MB): a bigger
#: file is refused before it is read
MAX_BATCH_BYTES = 256 * MIB
PIXELS = 3 * 32 * 32
#: the kinds of dtype an array in a batch may be built with (pixels are uint8, labels re-pickled
#: as arrays any integer): never objects, strings or records, whose pickled state numpy trusts
NUMERIC_KINDS = "biuf"
LATIN1 = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"}


def read_batch(
    path: Path, label_key: str, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One pickle batch -> images uint8 (N, 3, 32, 32) and labels (int64, checked to lie in
    ``0..num_classes-1`` when given).

    The file is read after a size check and unpickled by :class:`BatchUnpickler`, which builds
    nothing but the dicts, lists, strings and numeric arrays a batch holds. Keys may be ``str``
    (Python 2 pickles, the real files, loaded like torchvision with ``encoding="latin1"``) or
    ``bytes`` (re-pickled by Python 3), both are accepted. Whatever is wrong with the file
    ends in a UserError naming it.
    """
    raw = read_file(path, MAX_BATCH_BYTES, "CIFAR python batch")
    _check_opcodes(raw, path, label_key)
    try:
        entry = BatchUnpickler(io.BytesIO(raw), path).load()
        if not isinstance(entry, dict):
            raise ValueError(f"it holds a {type(entry).__name__}, not a dict")
        entry = {_text(key): _resolved(value) for key, value in entry.items()}
    except UserError:
        raise
    except Exception as error:  # anything a corrupt pickle makes the unpickler raise
        raise _not_a_batch(path, label_key, describe(error)) from None
    for key in ("data", label_key):
        if key not in entry:
            raise _not_a_batch(path, label_key, f"it has no {key!r} entry")
    data = entry["data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != PIXELS
    ):
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
        raise UserError(f"{path}: expected 'data' as uint8 N x {PIXELS} pixels, found {found}")
    labels = _labels(entry[label_key], path, label_key)
    if len(labels) != len(data):
        raise UserError(f"{path}: {len(data)} images but {len(labels)} {label_key!r}")
    if num_classes is not None:
        labels = check_labels(labels, num_classes, path)
    return data.reshape(-1, 3, 32, 32), labels


def _check_opcodes(raw: bytes, path: Path, label_key: str) -> None:
    """Walk the pickle's opcodes without running them: each declared length (of a string,
    an integer, a frame) must fit in the bytes that follow. The unpickler allocates a
    declared length before reading it, so a corrupt one would ask for gigabytes."""
    try:
        for opcode, argument, position in pickletools.genops(raw):
            if opcode.name == "FRAME" and argument > len(raw) - position:
                raise ValueError(f"a frame of {argument} bytes at byte {position}")
    except ValueError as error:
        raise _not_a_batch(path, label_key, describe(error)) from None


def _not_a_batch(path: Path, label_key: str, why: str) -> UserError:
    return UserError(
        f"{path} is not a CIFAR python batch with {label_key!r} ({why}); "
        f"download it again from {URL}"
    )


def _labels(value: object, path: Path, label_key: str) -> np.ndarray:
    """A batch's labels -- a list of ints (the real files) or an integer array -- as int64."""
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu":
        if value.dtype.kind == "u" and value.size and value.max() > np.iinfo(np.int64).max:
            raise UserError(f"{path}: {label_key!r} holds labels too large for any class")
        return value.astype(np.int64)
    if isinstance(value, list | tuple) and all(
        isinstance(label, int | np.integer) and not isinstance(label, bool) for label in value
    ):
        if any(not -(2**63) <= int(label) < 2**63 for label in value):
            raise UserError(f"{path}: {label_key!r} holds labels too large for any class")
        return np.array([int(label) for label in value], dtype=np.int64)
    raise UserError(f"{path}: {label_key!r} is not a list of integer labels")


def _text(key: object) -> object:
    return key.decode("latin1") if isinstance(key, bytes) else key


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch and nothing else: ``find_class`` hands out only checked
    stand-ins for what the real files (and Python 3 re-pickles of them) name -- numpy's array
    and dtype reconstruction, ``_codecs.encode`` and ``bytes``/``bytearray`` for byte
    strings -- and refuses every other global with a UserError. Arrays are rebuilt from their
    raw bytes with :func:`numpy.frombuffer` after their declared size is checked against the
    bytes present, so no declared length or shape can allocate more than the file holds.
    """

    def __init__(self, file: io.BytesIO, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> object:
        found = _GLOBALS.get((module, name))
        if found is None:
            named = one_line(f"{module}.{name}")[:120]
            raise UserError(
                f"{self.path} is not a CIFAR python batch: it names {named}, which a "
                f"batch never holds (refused, not loaded); download it again from {URL}"
            )
        return found


class _NdarrayName:
    """What ``numpy.ndarray`` unpickles to: only :func:`_reconstruct` accepts it."""


class _ArrayState:
    """An array under reconstruction: ``_reconstruct`` makes it, the pickle's BUILD gives it
    its state (version, shape, dtype, Fortran order, raw bytes), checked here."""

    array: np.ndarray | None = None

    def __setstate__(self, state: tuple) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise ValueError("an array's state is not a 4- or 5-tuple")
        shape, dtype, fortran, raw = state[-4:]
        self.array = _array_from_bytes(raw, dtype, shape, "F" if fortran else "C")


class _DtypeState:
    """A numeric dtype made by the pickle (``numpy.dtype('u1', False, True)``); of its BUILD
    state only the byte order is used (the rest describes records, never in a batch)."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state: tuple) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else None
        if not isinstance(order, str) or order not in ("<", ">", "|", "="):
            raise ValueError("a dtype's state does not start with a byte order")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


def _numeric_dtype(spec: object, *_flags: object) -> _DtypeState:
    """``numpy.dtype(spec)`` for integer, boolean and float types only (see NUMERIC_KINDS)."""
    spec = _text(spec)
    if not isinstance(spec, str) or not 0 < len(spec) <= 4:
        raise ValueError("a dtype that is not a numeric type code")
    dtype = np.dtype(spec)
    if dtype.kind not in NUMERIC_KINDS or dtype.itemsize > 8:
        raise ValueError(f"dtype {spec!r} is not a numeric type")
    return _DtypeState(dtype)


def _reconstruct(kind: object, shape: object, typecode: object) -> _ArrayState:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``, what a pickled array
    starts with; its BUILD state then fills it in."""
    if kind is not _NdarrayName or not isinstance(shape, tuple) or any(shape):
        raise ValueError("an array reconstruction that is not ndarray of shape (0,)")
    return _ArrayState()


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> np.ndarray:
    """``numpy.core.numeric._frombuffer``: arrays pickled with protocol 5."""
    return _array_from_bytes(buffer, dtype, shape, order)


def _array_from_bytes(raw: object, dtype: object, shape: object, order: object) -> np.ndarray:
    if isinstance(raw, str):  # a Python 2 str loaded with encoding="latin1"
        raw = raw.encode("latin1")
    if not isinstance(raw, bytes | bytearray) or not isinstance(dtype, _DtypeState):
        raise ValueError("an array's data is not a byte string of a numeric dtype")
    if not isinstance(shape, tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise ValueError("an array's shape is not a tuple of sizes")
    if len(shape) > 8:
        raise ValueError(f"an array of {len(shape)} dimensions")
    declared = math.prod(shape) * dtype.dtype.itemsize  # exact, however large
    if declared != len(raw):
        raise ValueError(
            f"an array of shape {shape} ({dtype.dtype}) needs {declared} bytes, "
            f"its data holds {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype.dtype).reshape(shape, order="F" if order == "F" else "C")


def _scalar(dtype: object, raw: object) -> np.generic:
    """``numpy.core.multiarray.scalar``: a numpy integer pickled inside a list of labels."""
    return _array_from_bytes(raw, dtype, (), "C")[()]


def _encode(text: object, encoding: object = "utf-8") -> bytes:
    """``_codecs.encode(text, "latin1")``: how Python 3 pickles bytes at protocol 2."""
    if not isinstance(text, str) or not isinstance(encoding, str) or encoding not in LATIN1:
        raise ValueError("a byte string encoded otherwise than latin1")
    return text.encode("latin1")


def _byte_string(kind: type) -> Callable[..., bytes | bytearray]:
    """``bytes()``, ``bytearray(b"...")``, ``bytearray("...", "latin-1")`` as pickled at
    protocols 2-4: from a string only, never from a size (which would allocate it)."""

    def make(*args: object) -> bytes | bytearray:
        if len(args) == 2:
            return kind(_encode(*args))
        if len(args) > 1 or (args and not isinstance(args[0], bytes | bytearray)):
            raise ValueError(f"{kind.__name__} from something other than a byte string")
        return kind(*args)

    return make


def _resolved(value: object) -> object:
    """A top-level entry of the batch, with an unpickled array stand-in turned into its array."""
    if isinstance(value, _ArrayState):
        if value.array is None:
            raise ValueError("an array without its data")
        return value.array
    if isinstance(value, _DtypeState):
        return value.dtype
    return value


_GLOBALS: dict[tuple[str, str], object] = {}
for _module in ("numpy.core", "numpy._core"):
    _GLOBALS[(f"{_module}.multiarray", "_reconstruct")] = _reconstruct
    _GLOBALS[(f"{_module}.multiarray", "scalar")] = _scalar
    _GLOBALS[(f"{_module}.numeric", "_frombuffer")] = _frombuffer
for _module in ("__builtin__", "builtins"):
    _GLOBALS[(_module, "bytes")] = _byte_string(bytes)
    _GLOBALS[(_module, "bytearray")] = _byte_string(bytearray)
_GLOBALS[("numpy", "ndarray")] = _NdarrayName
_GLOBALS[("numpy", "dtype")] = _numeric_dtype
_GLOBALS[("_codecs", "encode")] = _encode


def build_cifar(
    source: CifarSource, root: Path | None, split: str, image_size: int | None, download: bool
) -> TensorImageDataset:
    """Load ``split`` ("train", "test", "train+test") of a CIFAR variant into memory."""
    expected = f"the folder that contains {source.folder}"
    fix = f"download it from {URL} (or rerun with --download)"
    root = require_root(root, source.title, expected, fix)
    folder = locate_folder(root, source.folder, source.files["test"][0])
    if download and not all(
        (folder / f).exists() for files in source.files.values() for f in files
    ):
        _download(source, root)
    parts = []
    for part in split.split("+"):
        for file in source.files[part]:
            path = folder / file
            if not path.exists():
                raise not_found(source.title, path, f"{fix} and pass --data-root DIR, {expected}")
            parts.append(read_batch(path, source.label_key, len(source.class_names)))
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return tensor_dataset(source.name, images, labels, list(source.class_names), image_size)


def _download(source: CifarSource, root: Path) -> None:
    from torchvision import datasets

    tv_class = {"cifar10": datasets.CIFAR10, "cifar100-20": datasets.CIFAR100}[source.name]
    torchvision_download(source.title, lambda: tv_class(str(root), download=True), URL)


def build_cifar10(
    root: Path | None, split: str, image_size: int | None, download: bool
) -> TensorImageDataset:
    """CIFAR-10: 50,000 train + 10,000 test colour images, 32x32, 10 classes."""
    return build_cifar(CIFAR10, root, split, image_size, download)


def build_cifar100_20(
    root: Path | None, split: str, image_size: int | None, download: bool
) -> TensorImageDataset:
    """CIFAR-100 with its 20 coarse superclass labels (``coarse_labels``)."""
    return build_cifar(CIFAR100_20, root, split, image_size, download)

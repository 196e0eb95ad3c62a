"""Helpers shared by the dataset builders: locating files, clear errors, resizing, downloads."""

from __future__ import annotations

import stat
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

from cluster_ssl.data.base import TensorImageDataset
from cluster_ssl.runtime.errors import UserError

RESIZE_CHUNK = 4096
MIB = 1 << 20


def require_root(root: Path | None, title: str, expected: str, fix: str) -> Path:
    """Return ``root``, or raise a one-line UserError when no data root was given."""
    if root is None:
        raise UserError(f"{title} needs a data root: pass --data-root DIR, {expected}; {fix}")
    return root


def not_found(title: str, expected: Path | str, fix: str) -> UserError:
    """The one-line error for a missing dataset file: what was expected where, and how to fix it."""
    return UserError(f"{title} not found: expected {expected}; {fix}")


def first_existing(candidates: Sequence[Path]) -> Path | None:
    """The first path in ``candidates`` that exists, else None."""
    return next((path for path in candidates if path.exists()), None)


def locate_folder(root: Path, folder: str, probe: str) -> Path:
    """``root/folder`` if ``probe`` is inside it; ``root`` itself if the user pointed at ``folder``.

    Falls back to ``root/folder`` (which then fails with a clear message) when neither holds.
    """
    nested = root / folder
    if not (nested / probe).exists() and (root / probe).exists():
        return root
    return nested


def one_line(text: object) -> str:
    """``text`` with its whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(str(text).split())


def describe(error: BaseException) -> str:
    """``"ErrorType: message"`` on one line, for a UserError that quotes a lower-level error."""
    message = one_line(error)
    if len(message) > 300:  # a corrupt file's content can end up quoted in the message
        message = message[:300] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def file_size(path: Path, limit: int, what: str) -> int:
    """The size of ``path`` after checking it is a regular file of at most ``limit`` bytes.

    Raises a UserError naming the file when it is a directory (or another non-file), cannot
    be looked at, or is larger than any real ``what`` file (so it is never read).
    """
    try:
        status = path.stat()
    except OSError as error:
        raise UserError(f"{path} cannot be read ({describe(error)})") from None
    if not stat.S_ISREG(status.st_mode):
        kind = "a directory" if stat.S_ISDIR(status.st_mode) else "not a regular file"
        raise UserError(f"{path} is {kind} where the {what} file should be; put the file there")
    if status.st_size > limit:
        raise UserError(
            f"{path} is {status.st_size} bytes, more than any {what} file "
            f"({limit // MIB} MiB at most): it is not one, or it is corrupt; download it again"
        )
    return status.st_size


def read_file(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes (else a UserError)."""
    file_size(path, limit, what)
    try:
        return path.read_bytes()
    except OSError as error:
        raise UserError(f"{path} cannot be read ({describe(error)})") from None


def read_compressed(
    path: Path, opener: Callable[[Path], BinaryIO], limit: int, what: str, kind: str
) -> bytes:
    """The decompressed bytes of ``path``, which ``opener`` (``gzip.GzipFile``,
    ``bz2.BZ2File``...) opens for reading.

    The file and its decompressed content are each at most ``limit`` bytes; a truncated or
    corrupt archive raises a UserError naming the file.
    """
    file_size(path, limit, what)
    try:
        with opener(path) as handle:
            data = handle.read(limit + 1)
    except (EOFError, OSError, ValueError, zlib.error) as error:
        raise UserError(
            f"{path} is a truncated or corrupt {kind} file ({describe(error)}); download it again"
        ) from None
    if len(data) > limit:
        raise UserError(
            f"{path} decompresses to more than any {what} file ({limit // MIB} MiB at most); "
            "it is not one, or it is corrupt; download it again"
        )
    return data


def check_labels(labels: np.ndarray, num_classes: int, source: Path | str) -> np.ndarray:
    """Labels as int64, after checking they lie in ``[0, num_classes)``."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"{source}: labels outside 0..{num_classes - 1} "
            f"(found {labels.min()}..{labels.max()}); the file is not the expected dataset"
        )
    return labels


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 images (N, C, H, W) to (N, C, size, size), bilinear with antialiasing."""
    if images.shape[-2:] == (size, size):
        return images
    chunks = [
        F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True)
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        for chunk in images.split(RESIZE_CHUNK)
    ]
    return torch.cat(chunks) if chunks else images.new_empty((0, images.shape[1], size, size))


def tensor_dataset(
    name: str,
    images: np.ndarray,
    labels: np.ndarray | None,
    class_names: list[str] | None,
    image_size: int | None,
) -> TensorImageDataset:
    """Wrap uint8 images (N, C, H, W) as a TensorImageDataset, resized when ``image_size`` asks."""
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
    if image_size is not None:
        tensor = resize_images(tensor, image_size)
    return TensorImageDataset(name=name, images=tensor, labels=labels, class_names=class_names)


def torchvision_download(title: str, fetch: Callable[[], object], url: str) -> None:
    """Run a torchvision download call, turning network/archive failures into a UserError."""
    try:
        fetch()
    except (OSError, RuntimeError, ValueError) as error:
        raise UserError(
            f"downloading {title} failed ({one_line(error)}); download it by hand from {url} "
            "and pass --data-root DIR"
        ) from None


def no_download(title: str, download: bool, fix: str) -> None:
    """Raise a UserError when a download is asked for a dataset that cannot be fetched."""
    if download:
        raise UserError(f"{title} cannot be downloaded automatically; {fix}")

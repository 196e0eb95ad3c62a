"""Images decoded lazily from files: any folder of pictures, and the ImageNet-style trees.

Every image is decoded with PIL, turned upright by its EXIF orientation, converted to RGB
(or grey) whatever its mode (palette, RGBA, 16-bit, CMYK), its shorter side resized to
``image_size`` and centre-cropped to a square.
"""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from cluster_ssl.data.base import ImageDataset
from cluster_ssl.data.common import describe
from cluster_ssl.runtime.errors import UserError

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".jfif",
    ".png",
    ".webp",
    ".bmp",
    ".tif",
    ".tiff",
    ".gif",  # its first frame
    ".avif",
)
#: photo formats PIL does not read here: listed as skipped, with the fix, not passed over
UNSUPPORTED_EXTENSIONS = (
    ".heic",
    ".heif",
    ".svg",
    ".psd",
    ".dng",
    ".cr2",
    ".cr3",
    ".nef",
    ".arw",
    ".orf",
    ".rw2",
    ".raw",
)
DEFAULT_FOLDER_SIZE = 96
INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# What PIL raises on broken, truncated or hostile files (struct.error from bad headers).
DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    KeyError,
    IndexError,
    TypeError,
    struct.error,
    Image.DecompressionBombError,
)


class FileImageDataset(ImageDataset):
    """Images decoded per item from ``paths``, as uint8 (channels, image_size, image_size)."""

    def __init__(
        self,
        name: str,
        paths: list[Path],
        image_size: int,
        channels: int = 3,
        labels: np.ndarray | None = None,
        class_names: list[str] | None = None,
        skipped: list[tuple[Path, str]] | None = None,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        self.name = name
        self.paths = list(paths)
        self.image_size = image_size
        self.channels = channels
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.class_names = class_names
        self.image_shape = (channels, image_size, image_size)
        #: files under the folder that were left out, with the reason (``skip_unreadable``)
        self.skipped = list(skipped or [])
        if self.labels is not None and len(self.labels) != len(self.paths):
            raise ValueError("labels and paths differ in length")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        image = decode_image(self.paths[index], self.image_size, self.channels)
        label = -1 if self.labels is None else int(self.labels[index])
        return {"image": image, "label": label, "index": index}


def decode_image(path: Path, size: int, channels: int = 3) -> torch.Tensor:
    """Decode ``path`` into a uint8 tensor (channels, size, size); a UserError if unreadable."""
    try:
        with Image.open(path) as opened:
            if opened.format == "JPEG":
                opened.draft(None, (size, size))  # decode JPEGs at a reduced scale >= size
            upright = ImageOps.exif_transpose(opened)
            image = square_resize(to_mode(upright, "RGB" if channels == 3 else "L"), size)
    except DECODE_ERRORS as error:
        raise UserError(
            f"cannot read image {path}: {describe(error)}; remove or replace that file "
            f"(`cluster-ssl cluster` leaves unreadable files out and lists them)"
        ) from None
    array = np.asarray(image)
    tensor = torch.from_numpy(array.copy())
    return tensor.permute(2, 0, 1).contiguous() if channels == 3 else tensor[None]


def to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert any PIL image to ``"RGB"`` or ``"L"``.

    16-bit and 32-bit integer images are scaled to 8 bits (not clipped), float images are
    min-max scaled, and transparent images are composited onto white.
    """
    if image.mode in INTEGER_MODES:
        values = np.asarray(image, dtype=np.float64)
        scale = 257.0 if values.max(initial=0) > 255 else 1.0
        image = Image.fromarray(np.clip(np.round(values / scale), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        low, span = values.min(initial=0), np.ptp(values) or 1.0
        image = Image.fromarray(np.round((values - low) / span * 255).astype(np.uint8), "L")
    elif image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image if image.mode == mode else image.convert(mode)


def square_resize(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and centre-crop to size x size, in one resampling."""
    width, height = image.size
    short = min(width, height)
    left, top = (width - short) / 2, (height - short) / 2
    box = (left, top, left + short, top + short)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=box)


def is_image_file(path: Path) -> bool:
    """Whether the name ends in a supported image extension (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def folder_files(root: Path, exclude: Path | None = None) -> list[Path]:
    """Every file under ``root``, recursively and sorted, leaving out hidden files and
    folders (names starting with a dot: thumbnail caches, ``._`` resource forks), the
    folder ``exclude`` (a run writing its outputs inside the image folder), the contents
    of symlinked folders (not followed) and symlinks to a file already listed (an image
    counts once)."""
    skip = None if exclude is None else Path(exclude).resolve()
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [
            name
            for name in subfolders
            if not name.startswith(".") and (Path(folder) / name).resolve() != skip
        ]
        found += [Path(folder) / name for name in names if not name.startswith(".")]
    seen = {path.resolve() for path in found if not path.is_symlink()}
    unique = []
    for path in sorted(found):
        if path.is_symlink():
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
        unique.append(path)
    return unique


def list_images(root: Path, exclude: Path | None = None) -> list[Path]:
    """The image files among :func:`folder_files`."""
    return [path for path in folder_files(root, exclude) if is_image_file(path)]


def scan_images(
    root: str | Path, decode: bool = False, exclude: Path | None = None
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Check every image file under ``root``: (readable paths, [(skipped path, reason)]).

    Each file is opened and checked with ``PIL.Image.verify`` (headers and, for PNG, checksums)
    without keeping decoded pixels. ``decode=True`` also decodes each image once (JPEGs at a
    reduced scale), which catches truncated files that ``verify`` lets through. Photos in a
    format PIL cannot read (HEIC, camera raw...) are among the skipped, with the fix.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist or is not a directory")
    files = folder_files(root, exclude)
    readable, skipped = check_images([path for path in files if is_image_file(path)], decode)
    unsupported = [
        (path, f"{path.suffix} images cannot be read; convert them to JPEG or PNG")
        for path in files
        if path.suffix.lower() in UNSUPPORTED_EXTENSIONS
    ]
    return readable, sorted(skipped + unsupported)


def check_images(
    paths: list[Path], decode: bool = False
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Split ``paths`` into the readable ones and (path, reason) for the others."""
    readable: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        reason = check_image(path, decode)
        if reason is None:
            readable.append(path)
        else:
            skipped.append((path, reason))
    return readable, skipped


def check_image(path: Path, decode: bool) -> str | None:
    """None when ``path`` opens as an image, else the reason it does not.

    The answer is remembered for the file's path, size and modification time, so the
    several passes of one ``cluster`` command (its check, training, choosing k, the
    report) decode each image once; a file changed in between is checked again.
    """
    try:
        stat = Path(path).stat()
    except OSError as error:
        return describe(error)
    return _check_file_version(str(path), stat.st_size, stat.st_mtime_ns, decode)


@functools.lru_cache(maxsize=2**20)
def _check_file_version(path: str, size: int, mtime_ns: int, decode: bool) -> str | None:
    """:func:`check_image` for one version of a file (``size`` and ``mtime_ns`` key it)."""
    try:
        with Image.open(path) as image:
            image.verify()
        if decode:
            with Image.open(path) as image:
                image.draft(None, (64, 64))
                image.load()
    except DECODE_ERRORS as error:
        return describe(error)
    return None


def build_folder(
    root: Path | None,
    split: str,
    image_size: int | None,
    download: bool,
    channels: int = 3,
    skip_unreadable: bool = False,
    exclude: str | None = None,
    labels: str | None = None,
) -> FileImageDataset:
    """Every image under ``root`` (recursively, sorted paths), decoded lazily; unlabelled
    unless ``labels`` names a CSV of ``name,label`` rows (:func:`read_folder_labels`),
    which lets training score the folder (tools/folder_length.py measures that way).

    By default an unreadable file stops training when it is reached, naming the file;
    ``skip_unreadable=True`` decodes every file once first and leaves out the ones that fail
    (kept with their reasons in ``dataset.skipped``), as ``cluster-ssl cluster`` does.
    ``exclude``: a folder under ``root`` to leave out (that command's output directory).
    """
    if root is None:
        raise UserError("the folder dataset needs a directory: pass --data-root DIR (your images)")
    if download:
        raise UserError("the folder dataset cannot be downloaded; point --data-root at your images")
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist or is not a directory")
    skipped: list[tuple[Path, str]] = []
    if skip_unreadable:
        paths, skipped = scan_images(root, decode=True, exclude=exclude)
    else:
        paths = list_images(root, exclude)
    if not paths:
        unreadable = f"; {len(skipped)} unreadable files were skipped" if skipped else ""
        raise UserError(
            f"no readable images found under {root} (looked for "
            f"{', '.join(IMAGE_EXTENSIONS)}, recursively{unreadable})"
        )
    size = image_size or DEFAULT_FOLDER_SIZE
    if labels is None:
        return FileImageDataset("folder", paths, size, channels, skipped=skipped)
    label_ids, class_names = read_folder_labels(Path(labels), root, paths)
    return FileImageDataset(
        "folder", paths, size, channels, label_ids, class_names, skipped=skipped
    )


def read_folder_labels(path: Path, root: Path, paths: list[Path]) -> tuple[np.ndarray, list[str]]:
    """The label of each of ``paths`` from a CSV of ``name,label`` rows, ``name`` relative to
    ``root`` (the layout tools/image_folder.py writes). Classes are the sorted label values,
    numerically when all are whole numbers.

    Raises:
        UserError: the file is missing or unreadable, a row is not ``name,label``, or an
            image has no row.
    """
    try:
        rows = [line.rsplit(",", 1) for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the labels file {path}: {describe(error)}") from None
    bad = [i + 1 for i, row in enumerate(rows) if len(row) != 2 or not row[0] or not row[1]]
    if bad:
        raise UserError(f"{path} line {bad[0]}: expected 'name,label'")
    by_name = dict(rows)
    names = [p.relative_to(root).as_posix() for p in paths]
    missing = [name for name in names if name not in by_name]
    if missing:
        raise UserError(f"{path} has no label for {missing[0]} ({len(missing)} images lack one)")
    values = sorted(set(by_name[name] for name in names))
    if all(v.lstrip("-").isdigit() for v in values):
        values = sorted(values, key=int)
    index = {value: i for i, value in enumerate(values)}
    return np.array([index[by_name[name]] for name in names], dtype=np.int64), values

"""A labelled folder of PNGs to try ``cluster-ssl cluster`` on, and scoring a clustering of it.

    python tools/image_folder.py write digits DIR              # the 1,797 scikit-learn digits
    python tools/image_folder.py write fashion-mnist DIR --n 3000 --junk
    cluster-ssl cluster DIR/images --k 10 --out RUN
    python tools/image_folder.py score RUN/assignments.csv DIR/labels.csv

``write`` makes DIR/images/NNNNN.png and DIR/labels.csv (``name,label`` per image). digits'
pixels are written as the dataset holds them (0..16 scaled to 0..255); fashion-mnist takes the
first N images of its 10,000-image test split (already in random class order), read from the
IDX files in --root (Debian's /usr/share/datasets/fashion-mnist by default). ``--junk`` adds
files a real folder holds and the command must list as skipped, not fail on: a text file, an
empty and a truncated PNG, and a file that only claims to be a JPEG.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

from cluster_ssl.data.mnist import FASHION_MNIST, FASHION_SYSTEM_DIR, load_idx_split
from cluster_ssl.eval.metrics import evaluate_clustering

SOURCES = ("digits", "fashion-mnist")
#: the junk files ``--junk`` adds (their contents: :func:`write_junk`)
JUNK_NAMES = ("notes.txt", "empty.png", "truncated.png", "not-really.jpg")


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (N, 8, 8) images and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return np.round(data.images * 255.0 / 16.0).astype(np.uint8), data.target


def fashion_mnist(root: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` Fashion-MNIST test images (N, 28, 28) and labels."""
    images, labels = load_idx_split(FASHION_MNIST, root, "test")
    return images[:n, 0], labels[:n]


def write(out: Path, images: np.ndarray, labels: np.ndarray, junk: bool) -> None:
    """One grey PNG per image under ``out/images`` and ``out/labels.csv``; junk beside them."""
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(len(images) - 1)))
    with (out / "labels.csv").open("w") as handle:
        for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            name = f"{i:0{width}d}.png"
            Image.fromarray(pixels, "L").save(folder / name)
            handle.write(f"{name},{int(label)}\n")
    if junk:
        write_junk(folder, images[0])
    extra = f" and {len(JUNK_NAMES)} junk files" if junk else ""
    print(f"wrote {len(images)} images{extra} to {folder}")


def write_junk(folder: Path, pixels: np.ndarray) -> None:
    """The :data:`JUNK_NAMES` files; the truncated PNG keeps a real header, so only
    decoding it fails."""
    png = io.BytesIO()
    Image.fromarray(pixels, "L").save(png, format="PNG")
    contents = {
        "notes.txt": b"not an image\n",
        "empty.png": b"",
        "truncated.png": png.getvalue()[: len(png.getvalue()) // 2],
        "not-really.jpg": b"<html>a saved web page</html>\n",
    }
    for name in JUNK_NAMES:
        (folder / name).write_bytes(contents[name])


def score(assignments: Path, labels: Path) -> dict[str, float]:
    truth = dict(line.strip().split(",") for line in labels.read_text().splitlines())
    with assignments.open() as handle:
        rows = list(csv.DictReader(handle))
    y_true = np.array([int(truth[Path(row["path"]).name]) for row in rows])
    y_pred = np.array([int(row["cluster"]) for row in rows])
    metrics = evaluate_clustering(y_true, y_pred, int(y_pred.max()) + 1)
    print(
        f"{len(rows)} images: ACC {metrics['acc']:.4f}  NMI {metrics['nmi']:.4f}  "
        f"ARI {metrics['ari']:.4f}"
    )
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    writing = commands.add_parser("write")
    writing.add_argument("source", choices=SOURCES)
    writing.add_argument("out", type=Path)
    writing.add_argument("--n", type=int, default=None, help="images to write (default all)")
    writing.add_argument("--root", type=Path, default=FASHION_SYSTEM_DIR, help="IDX folder")
    writing.add_argument("--junk", action="store_true", help="add files that are not images")
    scoring = commands.add_parser("score")
    scoring.add_argument("assignments", type=Path)
    scoring.add_argument("labels", type=Path)
    args = parser.parse_args(argv)
    if args.command == "score":
        score(args.assignments, args.labels)
        return
    if args.source == "digits":
        images, labels = digits()
        images, labels = images[: args.n], labels[: args.n]
    else:
        images, labels = fashion_mnist(args.root, 10_000 if args.n is None else args.n)
    write(args.out, images, labels, args.junk)


if __name__ == "__main__":
    main()

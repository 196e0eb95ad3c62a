"""The 1,797 scikit-learn digits as a folder of PNGs, and scoring a clustering of it.

    python tools/digits_folder.py write DIR            # DIR/images/NNNN.png + DIR/labels.csv
    cluster-ssl cluster DIR/images --k 10 --out RUN --set flip=false
    python tools/digits_folder.py score RUN/assignments.csv DIR/labels.csv

Pixels are written as the ``digits`` dataset holds them (0..16 scaled to 0..255).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from cluster_ssl.eval.metrics import evaluate_clustering


def write(out: Path) -> None:
    digits = load_digits()
    (out / "images").mkdir(parents=True, exist_ok=True)
    with (out / "labels.csv").open("w") as labels:
        for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
            name = f"{i:04d}.png"
            image = np.round(pixels * 255.0 / 16.0).astype(np.uint8)
            Image.fromarray(image, "L").save(out / "images" / name)
            labels.write(f"{name},{label}\n")
    print(f"wrote {len(digits.images)} images to {out / 'images'}")


def score(assignments: Path, labels: Path) -> None:
    truth = dict(line.strip().split(",") for line in labels.read_text().splitlines())
    with assignments.open() as handle:
        rows = list(csv.DictReader(handle))
    y_true = np.array([int(truth[row["path"]]) for row in rows])
    y_pred = np.array([int(row["cluster"]) for row in rows])
    metrics = evaluate_clustering(y_true, y_pred, int(y_pred.max()) + 1)
    print(
        f"{len(rows)} images: ACC {metrics['acc']:.4f}  NMI {metrics['nmi']:.4f}  "
        f"ARI {metrics['ari']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("write").add_argument("out", type=Path)
    scoring = commands.add_parser("score")
    scoring.add_argument("assignments", type=Path)
    scoring.add_argument("labels", type=Path)
    args = parser.parse_args()
    if args.command == "write":
        write(args.out)
    else:
        score(args.assignments, args.labels)


if __name__ == "__main__":
    main()

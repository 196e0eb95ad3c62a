"""How long ``cluster-ssl cluster`` should train a small folder: ACC against images seen.

    python tools/folder_length.py OUT --n 1000 [--images-seen 300000] [--evaluations 12]

Writes the first N Fashion-MNIST test images (``--source digits``: scikit-learn's digits) as
PNGs (tools/image_folder.py's layout) under OUT/data, then trains the run
``cluster-ssl cluster OUT/data/images --k 10`` would train (the same method and settings,
from the command's own sizing), only longer (``--images-seen`` images in all) and with the
folder's labels attached, so the trainer scores the clustering every few epochs. Prints one
row per evaluation (epochs, images seen, ACC, NMI) and marks the first at or past the length
the command's rule gives the folder. The method's learning rate must not depend on the run's
length (CC's is constant) for a row to stand for a run that stopped there. The run goes to
OUT/run (``--resume`` continues it). Used to choose the rule in
``cluster_ssl/commands/folder/sizing.py``; the measured curves are in docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from cluster_ssl.commands.config_card import resolved_settings
from cluster_ssl.commands.folder import sizing
from cluster_ssl.commands.folder.cluster import DEFAULT_METHOD
from cluster_ssl.commands.folder.request import FolderRequest
from cluster_ssl.commands.record import RunRequest
from cluster_ssl.commands.train import train
from cluster_ssl.data.folder import list_images
from cluster_ssl.data.mnist import FASHION_SYSTEM_DIR

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from tools.image_folder import SOURCES, digits, fashion_mnist, write  # noqa: E402

K = 10


def folder_run_settings(images: Path, out: Path, method: str) -> dict[str, Any]:
    """The settings ``cluster IMAGES --k 10 --method METHOD`` trains on the CPU with."""
    request = FolderRequest(folder=images, k=K, out=out, method=method)
    return sizing.folder_run_settings(request, method, list_images(images), K, torch.device("cpu"))


def measure(
    out: Path,
    n: int,
    images_seen: int,
    evaluations: int,
    method: str = DEFAULT_METHOD,
    source: str = "fashion-mnist",
    root: Path = FASHION_SYSTEM_DIR,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Train the folder run ``images_seen`` images long, scored ``evaluations`` times; the
    evaluations as rows of epochs, images seen, ACC, NMI (and whether the rule stops there)."""
    data = out / "data"
    if not (data / "labels.csv").is_file():
        images, labels = fashion_mnist(root, n) if source == "fashion-mnist" else digits()
        write(data, images[:n], labels[:n], junk=False)
    settings = folder_run_settings(data / "images", out / "run", method)
    default_epochs = settings["epochs"]
    epochs = max(1, images_seen // n)
    if resolved_settings(method, "folder", settings)["schedule"] != "constant":
        raise SystemExit(f"{method}'s schedule follows the run's length; measure a constant one")
    settings.update(epochs=epochs, eval_every=max(1, epochs // evaluations))
    train(
        RunRequest(
            recipe=method,
            dataset="folder",
            out=out / "run",
            data_root=str(data / "images"),
            overrides=settings,
            seed=0,
            device="cpu",
            resume=resume,
            dataset_options={"labels": str(data / "labels.csv")},
        )
    )
    rows: list[dict[str, Any]] = []
    for line in (out / "run" / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "acc" in record and "epoch" in record:
            rows.append(
                {
                    "epochs": record["epoch"],
                    "images_seen": record["epoch"] * n,
                    "acc": record["acc"],
                    "nmi": record["nmi"],
                    "default": record["epoch"] >= default_epochs
                    and not any(row["default"] for row in rows),
                }
            )
    print(f"{n} images; the command's rule: {default_epochs} epochs ({default_epochs * n} seen)")
    print("epochs  images seen  ACC     NMI")
    for row in rows:
        mark = "  <- the rule's length" if row["default"] else ""
        print(
            f"{row['epochs']:6d}  {row['images_seen']:11d}  {row['acc']:.4f}  "
            f"{row['nmi']:.4f}{mark}"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=1000, help="images in the folder")
    parser.add_argument("--images-seen", type=int, default=300_000)
    parser.add_argument("--evaluations", type=int, default=12)
    parser.add_argument("--method", default=DEFAULT_METHOD)
    parser.add_argument("--source", choices=SOURCES, default="fashion-mnist")
    parser.add_argument("--root", type=Path, default=FASHION_SYSTEM_DIR, help="IDX folder")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    measure(
        args.out,
        args.n,
        args.images_seen,
        args.evaluations,
        args.method,
        args.source,
        args.root,
        args.resume,
    )


if __name__ == "__main__":
    main()

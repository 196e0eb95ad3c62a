"""``cluster-ssl cluster FOLDER``: train on a folder of images and write what it found.

DIR/assignments.csv     path, cluster, confidence for every image read
DIR/clusters/NN.png     the most confident images of each cluster
DIR/embedding.png       2-D map of the embedding (UMAP when installed, else t-SNE)
DIR/report.html         one page showing all of it, opened from disk
DIR/skipped.txt         files left out, with the reason
DIR/summary.json, DIR/stages/  the run itself (``--resume`` continues it)
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from cluster_ssl.data.folder import DECODE_ERRORS, scan_images
from cluster_ssl.engine.device import resolve_device
from cluster_ssl.engine.run import RunRequest, load_trained_stage, train
from cluster_ssl.errors import UserError
from cluster_ssl.report.assignments import write_skipped
from cluster_ssl.report.run_report import sample_names, write_report_dir

#: recipes ``--method`` accepts (each trains on an unlabelled folder as is)
FOLDER_METHODS = ("cc", "scan", "simclr", "idfd", "pcl", "deepcluster")
DEFAULT_METHOD = "cc"


@dataclass
class FolderRequest:
    folder: Path
    k: int
    out: Path
    method: str = DEFAULT_METHOD
    backbone: str | None = None
    weights: str | None = None
    epochs: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    device: str = "auto"
    resume: bool = False
    progress: bool = True
    num_workers: int = 2


def native_side(paths: list[Path], sample: int = 200) -> int:
    """Median shorter side of (up to ``sample``) images, read from their headers."""
    sides = []
    for path in paths[:: max(1, len(paths) // sample)][:sample]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except DECODE_ERRORS:
            continue
    return int(statistics.median(sides)) if sides else 96


def default_settings(num_images: int, side: int, on_gpu: bool) -> dict[str, Any]:
    """Size and length for the folder and the device, before the user's ``--set``.

    Small images train at their own scale (16 or 32 px, with the CIFAR stem and crops of at
    least 30%); larger ones at 64 px on a CPU, 96 on a GPU. A quarter-width ResNet-18 on a
    CPU. About 100,000 images are seen in training (30 to 200 epochs).
    """
    image_size = 16 if side <= 16 else 32 if side <= 32 else 96 if on_gpu else 64
    return {
        "image_size": image_size,
        "cifar_stem": image_size <= 64,
        "width": 1.0 if on_gpu else 0.25,
        "backbone": "resnet18",
        "optimizer": "adam",
        "lr": 1e-3,
        "batch_size": max(2, min(256, num_images // 4)),
        "epochs": min(200, max(30, 100_000 // num_images)),
        "crop_scale": 0.3 if image_size <= 32 else None,
        "split": "train",  # a folder is one split, which SCAN also uses to pick its head
        "eval_split": None,
        "eval_every": 10,  # no labels to score, but collapse is reported
    }


def cluster_folder(request: FolderRequest) -> dict[str, Any]:
    """Train ``request.method`` on the folder's readable images, then write the report."""
    if request.method not in FOLDER_METHODS:
        raise UserError(f"--method {request.method!r} is not one of: {', '.join(FOLDER_METHODS)}")
    folder = Path(request.folder).expanduser()
    readable, skipped = scan_images(folder, decode=True)
    if not readable:
        raise UserError(
            f"no readable images in {folder}"
            + (f" ({len(skipped)} files could not be read)" if skipped else "")
        )
    if request.k < 2 or request.k > len(readable):
        raise UserError(
            f"--k {request.k}: need 2 <= k <= the {len(readable)} readable images in {folder}"
        )
    device = resolve_device(request.device)
    overrides: dict[str, Any] = {}
    if not request.resume:
        settings = default_settings(len(readable), native_side(readable), device.type == "cuda")
        overrides = {key: value for key, value in settings.items() if value is not None}
        overrides["eval_split"] = None
        overrides["num_clusters"] = request.k
        if request.backbone is not None:
            overrides["backbone"] = request.backbone
        if request.weights is not None:
            overrides["pretrained"] = request.weights
        if request.epochs is not None:
            overrides["epochs"] = request.epochs
        overrides.update(request.overrides)
    summary = train(
        RunRequest(
            recipe=request.method if not request.resume else None,
            dataset="folder",
            out=request.out,
            data_root=str(folder),
            overrides=overrides,
            seed=request.seed,
            device=request.device,
            resume=request.resume,
            progress=request.progress,
            num_workers=request.num_workers,
            dataset_options={"skip_unreadable": True},
        )
    )
    write_outputs(request.out, folder, device, request.num_workers)
    return summary


def write_outputs(out: Path, folder: Path, device, num_workers: int = 2) -> None:
    """Predict with the run's last stage and write the CSV, grids, map and page."""
    trained = load_trained_stage(out)
    dataset = trained.prepared.eval_dataset
    prediction = trained.predict(device, num_workers)
    write_skipped(out / "skipped.txt", dataset.skipped, folder)
    write_report_dir(
        out,
        dataset,
        prediction,
        title=f"{folder.name}: {prediction.num_clusters} clusters",
        facts={
            "folder": str(folder),
            "images clustered": str(len(prediction.labels)),
            "files skipped": str(len(dataset.skipped)),
            "method": trained.record["recipe"],
        },
        names=sample_names(dataset, folder),
        extra_links={"skipped.txt": "skipped.txt"},
    )

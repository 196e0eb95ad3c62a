"""``cluster-ssl cluster FOLDER``: train on a folder of images and write what it found.

DIR/assignments.csv     path, cluster, confidence for every image read
DIR/clusters/NN.png     the most confident images of each cluster
DIR/embedding.png       2-D map of the embedding (UMAP when installed, else t-SNE)
DIR/report.html         one page showing all of it, opened from disk
DIR/skipped.txt         files left out, with the reason
DIR/summary.json, DIR/stages/  the run itself (``--resume`` continues it)
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cluster_ssl.cluster.choose_k import choose_k
from cluster_ssl.data.folder import DECODE_ERRORS, scan_images
from cluster_ssl.engine.checkpoint import write_json
from cluster_ssl.engine.device import resolve_device
from cluster_ssl.engine.run import (
    K_SELECTION_FILE,
    RunRequest,
    keep_centres,
    load_trained_stage,
    train,
)
from cluster_ssl.errors import UserError
from cluster_ssl.methods.base import Prediction, StageContext
from cluster_ssl.models.backbones import TIMM_PREFIX
from cluster_ssl.report.assignments import write_skipped
from cluster_ssl.report.run_report import sample_names, write_report_dir

#: recipes ``--method`` accepts (each trains on an unlabelled folder as is)
FOLDER_METHODS = ("cc", "scan", "simclr", "idfd", "pcl", "deepcluster", "dec", "idec", "dcec")
#: DCEC's convolutional autoencoder takes 28 or 32 px images
DCEC_SIDE = 32
#: the ones that cluster an embedding by k-means, so k can be chosen after training
KMEANS_METHODS = ("simclr", "idfd", "pcl", "deepcluster")
DEFAULT_METHOD = "cc"
DEFAULT_AUTO_METHOD = "simclr"


@dataclass
class FolderRequest:
    folder: Path
    k: int | None  # None: choose it (``--k auto``) in ``k_range``
    out: Path
    method: str | None = None
    k_range: tuple[int, int] | None = None  # None: 2 to min(20, number of images - 1)
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
        **({"crop_scale": 0.3} if image_size <= 32 else {}),
        "split": "train",  # a folder is one split, which SCAN also uses to pick its head
        "eval_split": None,
        "eval_every": 10,  # no labels to score, but collapse is reported
    }


def method_settings(
    request: FolderRequest, method: str, num_images: int, side: int, device: torch.device
) -> dict[str, Any]:
    """The run's settings: :func:`default_settings` kept to those ``method`` has (the
    autoencoder recipes have no backbone or augmentation), then the command's options."""
    from recipes import RECIPES

    known = {field.name for field in dataclasses.fields(RECIPES.get(method).config)}
    settings = default_settings(num_images, side, device.type == "cuda")
    if method == "dcec":
        settings["image_size"] = DCEC_SIDE
    overrides = {key: value for key, value in settings.items() if key in known}
    for option, key, value in (
        ("--backbone", "backbone", request.backbone),
        ("--weights", "pretrained", request.weights),
    ):
        if value is not None and key not in known:
            raise UserError(f"{option} does not apply to {method} (it trains an autoencoder)")
        if value is not None:
            overrides[key] = value
    if str(request.backbone).startswith(TIMM_PREFIX):  # timm models take neither
        overrides = {k: v for k, v in overrides.items() if k not in ("width", "cifar_stem")}
    if request.epochs is not None:
        overrides["epochs"] = request.epochs
    return {**overrides, **request.overrides}


def sized_for_folder(method: str, num_images: int, k: int, epochs: int) -> dict[str, Any]:
    """PCL's and DeepCluster's settings that the papers size for 50,000+ images, sized
    for the folder and k instead (PCL's too when it is SCAN's pretext).

    PCL: a queue of at most half the images (4,096 at most, as the paper), prototype
    counts 2k, 4k and 8k (at most half the images), the E-step from a sixth of training on
    (the paper: 50 of 200 epochs). DeepCluster: 10k pseudo-classes (at most a tenth of the
    images) and a 64-d PCA (at most N - 1), which the quarter-width ResNet-18's 128
    features allow.
    """
    half = max(1, num_images // 2)
    if method == "pcl":
        counts = sorted({min(half, max(k, factor * k)) for factor in (2, 4, 8)})
        return {
            "queue_size": min(4096, half),
            "num_prototypes": tuple(counts),
            "warmup_epochs": epochs // 6,
        }
    if method == "deepcluster":
        return {
            "num_pseudo_classes": min(10 * k, max(k, num_images // 10)),
            "pca_dim": min(64, num_images - 1),
        }
    return {}


def cluster_folder(request: FolderRequest) -> dict[str, Any]:
    """Train ``request.method`` on the folder's readable images, then write the report."""
    auto = request.k is None
    folder = Path(request.folder).expanduser().resolve()  # a run resumes from anywhere
    stored = _stored_run(request.out, folder) if request.resume else {}
    method = (
        request.method or stored.get("recipe") or (DEFAULT_AUTO_METHOD if auto else DEFAULT_METHOD)
    )
    if "num_clusters" in request.overrides:
        raise UserError("give the number of clusters with --k, not --set num_clusters")
    if method not in FOLDER_METHODS:
        raise UserError(f"--method {method!r} is not one of: {', '.join(FOLDER_METHODS)}")
    if auto and method not in KMEANS_METHODS:
        raise UserError(
            f"--k auto needs a method that clusters its embedding by k-means "
            f"({', '.join(KMEANS_METHODS)}), not {method}; give --k N for {method}"
        )
    out = Path(request.out).expanduser().resolve()  # left out when it is inside the folder
    readable, skipped = scan_images(folder, decode=True, exclude=out)
    if not readable:
        raise UserError(
            f"no readable images in {folder}"
            + (f" ({len(skipped)} files could not be read)" if skipped else "")
        )
    if auto:  # a silhouette needs at least one cluster of two images: k < images
        low, high = request.k_range or (2, min(20, len(readable) - 1))
        largest = len(readable) - 1
        if request.k_range is None and high < low:
            raise UserError(
                f"--k auto needs at least 3 readable images, {folder} has {len(readable)}"
            )
    else:
        low, high = request.k, request.k
        largest = len(readable)
    if low > high:
        raise UserError(f"--k-range {low}:{high}: LOW is above HIGH; write it LOW:HIGH, e.g. 2:20")
    if low < 2 or high > largest:
        asked = f"--k-range {low}:{high}" if auto else f"--k {request.k}"
        bound = f"fewer than the {len(readable)}" if auto else f"at most the {len(readable)}"
        raise UserError(f"{asked}: need 2 <= k and k {bound} readable images in {folder}")
    device = resolve_device(request.device)
    overrides = method_settings(request, method, len(readable), native_side(readable), device)
    overrides["num_clusters"] = high  # the largest k tried when it is chosen
    trained_first = overrides.get("pretext", method) if method == "scan" else method
    sizing = sized_for_folder(trained_first, len(readable), high, overrides["epochs"])
    overrides = {**sizing, **overrides}  # the user's --set still has the last word
    if request.resume:  # the options given again must match the run's (it refuses others)
        overrides = {key: overrides[key] for key in _given_keys(request)}
    summary = train(
        RunRequest(
            recipe=method,
            dataset="folder",
            out=request.out,
            data_root=str(folder),
            overrides=overrides,
            seed=request.seed,
            device=request.device,
            resume=request.resume,
            progress=request.progress,
            num_workers=request.num_workers,
            dataset_options={"skip_unreadable": True, "exclude": str(out)},
        )
    )
    if auto:
        selection = choose_run_k(request.out, device, (low, high), request.num_workers)
        summary = {**summary, "num_clusters": selection["k"], "k_selection": selection}
    prediction = write_outputs(request.out, folder, device, request.num_workers)
    if auto:  # the summary describes the clustering with the chosen k
        sizes = np.bincount(prediction.labels, minlength=prediction.num_clusters)
        summary.update(clusters_used=int((sizes > 0).sum()), cluster_sizes=sizes.tolist())
        write_json(summary, request.out / "summary.json")
    return summary


def _given_keys(request: FolderRequest) -> list[str]:
    """The settings the command sets explicitly (``--k``, ``--epochs``, ``--set``...)."""
    options = {
        "epochs": request.epochs,
        "backbone": request.backbone,
        "pretrained": request.weights,
    }
    given = [key for key, value in options.items() if value is not None]
    return ["num_clusters", *given, *request.overrides]


def _stored_run(out: Path, folder: Path) -> dict[str, Any]:
    """The record of the run ``--resume`` continues (empty when there is none, which
    :func:`train` reports); a UserError when it clustered another folder that still exists."""
    run_file = Path(out) / "run.json"
    if not run_file.is_file():
        return {}
    stored = json.loads(run_file.read_text())
    before = Path(stored.get("data_root") or folder)
    if before.resolve() != folder and before.is_dir():
        raise UserError(
            f"--resume: {out} clustered {before}, not {folder}; give that folder, "
            f"or another --out to cluster this one"
        )
    return stored


def choose_run_k(
    out: Path, device: torch.device, k_range: tuple[int, int], num_workers: int = 2
) -> dict[str, Any]:
    """Choose k in ``k_range`` on the trained embedding (:func:`choose_k`), record it in
    ``k_selection.json`` (later predictions use it) and return the scores."""
    trained = load_trained_stage(out)
    dataset = trained.prepared.eval_dataset
    method = trained.stage.method.to(device).eval()
    ctx = StageContext(
        dataset, device, trained.record["seed"], num_workers=num_workers, network=method.network()
    )
    with torch.no_grad():
        embedding = method.embedding(ctx).cpu().numpy()
    best, scores = choose_k(embedding, range(k_range[0], k_range[1] + 1), seed=ctx.seed)
    selection = {"criterion": "mean cosine silhouette of k-means", "k": best, "scores": scores}
    write_json(selection, out / K_SELECTION_FILE)
    return selection


def write_outputs(out: Path, folder: Path, device, num_workers: int = 2) -> Prediction:
    """Predict with the run's last stage and write the CSV, grids, map and page."""
    trained = load_trained_stage(out)
    dataset = trained.prepared.eval_dataset
    prediction = trained.predict(device, num_workers)
    keep_centres(trained.stage.method, prediction, trained.path)  # k may have changed
    facts = {}
    chosen = out / K_SELECTION_FILE
    if chosen.is_file():
        selection = json.loads(chosen.read_text())
        low, high = min(map(int, selection["scores"])), max(map(int, selection["scores"]))
        facts["k chosen"] = f"{selection['k']} in {low}-{high} (highest silhouette)"
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
            **facts,
        },
        names=sample_names(dataset, folder),
        extra_links={"skipped.txt": "skipped.txt"},
    )
    return prediction

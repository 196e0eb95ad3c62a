"""``cluster-ssl predict``: assign new images to the clusters a finished run learned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.commands.folder.k_selection import chosen_k
from cluster_ssl.commands.train import centres_path
from cluster_ssl.commands.trained import load_trained_stage
from cluster_ssl.data.folder import FileImageDataset, check_images, is_image_file, list_images
from cluster_ssl.methods.base import StageContext
from cluster_ssl.report.assignments import write_assignments
from cluster_ssl.runtime.device import resolve_device
from cluster_ssl.runtime.errors import UserError


def image_files(inputs: list[Path]) -> list[Path]:
    """Every image file named, or found (recursively) under every folder named."""
    files: list[Path] = []
    for item in inputs:
        item = Path(item).expanduser()
        if item.is_dir():
            files += list_images(item)
        elif item.is_file() and is_image_file(item):
            files.append(item)
        else:
            raise UserError(f"{item} is not an image file or a folder")
    return files


def predict_images(
    checkpoint: Path,
    inputs: list[Path],
    out_csv: Path,
    device_spec: str = "auto",
    num_workers: int = 2,
) -> tuple[Prediction, list[tuple[Path, str]]]:
    """Write ``path, cluster, confidence`` for every readable image of ``inputs`` to
    ``out_csv``; returns the prediction and the files skipped (with reasons).

    The run's training data is read only when its clusters must be found again: a method
    that clusters by k-means, in a run that kept no centres for its k (runs of older
    versions, runs trained on another split than they reported, a ``--k auto`` run stopped
    between choosing k and writing its outputs).
    """
    readable, skipped = check_images(image_files(inputs), decode=True)
    if not readable:
        raise UserError(f"no readable images among {', '.join(map(str, inputs))}")
    trained = load_trained_stage(checkpoint, with_data=False, num_clusters=chosen_k(checkpoint))
    path = centres_path(trained.path)
    kept = np.load(path) if path.is_file() else None
    if kept is not None and len(kept) != trained.stage.method.num_clusters:
        kept = None  # centres of another k than the run's chosen one
    if kept is None and trained.stage.method.predict_new_reads_training_data():
        trained = load_trained_stage(checkpoint, num_clusters=chosen_k(checkpoint))
    training = trained.prepared.dataset
    channels, _, side = training.image_shape
    new = FileImageDataset("predict", readable, side, channels)
    device = resolve_device(device_spec)
    seed = trained.record["seed"]
    method = trained.stage.method.to(device).eval()
    network = method.network()
    with torch.no_grad():
        prediction = method.predict_new(
            StageContext(training, device, seed, num_workers=num_workers, network=network),
            StageContext(
                new, device, seed, num_workers=num_workers, training_data=False, network=network
            ),
            centres=kept,
        )
    names = [path.as_posix() for path in readable]
    write_assignments(out_csv, names, prediction.labels, prediction.confidence)
    return prediction, skipped

"""A trained run loaded back: its last (or a given) stage checkpoint in its recipe's method."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.commands.prepare import Prepared, prepare
from cluster_ssl.commands.train import predict_method
from cluster_ssl.data.registry import DATASETS
from cluster_ssl.engine.checkpoint import load_stage_checkpoint
from cluster_ssl.engine.trainer import Stage
from cluster_ssl.runtime.distributed import DistInfo
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.files import read_json
from cluster_ssl.runtime.state import load_state_strict


@dataclass
class TrainedStage:
    """A stage checkpoint loaded back into its run's method, with the run's data."""

    path: Path
    checkpoint: dict[str, Any]
    record: dict[str, Any]
    prepared: Prepared
    stage: Stage

    def predict(self, device: torch.device, num_workers: int = 2) -> Prediction:
        """The method's clustering of the run's evaluation split."""
        return predict_method(
            self.stage,
            self.prepared.eval_dataset,
            device,
            DistInfo(),
            self.record["seed"],
            training_data=self.prepared.eval_dataset is self.prepared.dataset,
            num_workers=num_workers,
            pass_batch_size=self.pass_batch_size,
        )

    @property
    def pass_batch_size(self) -> int | None:
        """The batch of whole-dataset passes the run's ``--speed`` trial kept (None: the
        device's default): the run's own final clustering's, so the same rows."""
        return (self.record.get("speed_choice") or {}).get("pass_batch_size")


def load_trained_stage(
    path: Path,
    data_root: str | None = None,
    split: str | None = None,
    with_data: bool = True,
    download: bool = False,
    num_clusters: int | None = None,
) -> TrainedStage:
    """Load a stage checkpoint (or a run directory's last stage) into its run's method;
    ``split`` replaces the run's evaluation split; ``download`` fetches missing data (as
    ``train --download``); ``with_data=False`` reads no images when the checkpoint
    describes its training data (:func:`prepare`); ``num_clusters`` replaces the run's k
    for methods that cluster by k-means after training."""
    path = Path(path)
    if path.is_dir():
        summary_file = path / "summary.json"
        candidates = sorted((path / "stages").glob("*.pt"))
        if summary_file.is_file():  # its path may be relative to where training ran
            summary = read_json(
                summary_file,
                ("checkpoint",),
                "delete it and run the same train command with --resume to write it again",
            )
            path = path / "stages" / Path(str(summary["checkpoint"])).name
        elif candidates:
            path = candidates[-1]
        else:
            raise UserError(f"{path} holds no checkpoint (no stages/*.pt)")
    checkpoint = load_stage_checkpoint(path)
    record = dict(checkpoint["run"])
    if data_root is not None:
        record["data_root"] = data_root
    if download:
        record["download"] = True
    if split is not None:
        splits = DATASETS.get(record["dataset"]).splits
        if split not in splits and split != "train+test":  # which a folder reads as train
            raise UserError(
                f"--split {split}: dataset {record['dataset']!r} has no such split; "
                f"choose one of {', '.join(splits)}"
            )
        record["overrides"] = {**record["overrides"], "eval_split": split}
    prepared = prepare(record, with_data)
    stage = prepared.stages[checkpoint["stage_index"]]
    load_state_strict(stage.method, checkpoint["method"], f"stage {stage.name!r}")
    if num_clusters is not None:  # k chosen after training (``cluster --k auto``)
        stage.method.num_clusters = prepared.num_clusters = num_clusters
    return TrainedStage(path, checkpoint, record, prepared, stage)

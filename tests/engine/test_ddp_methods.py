"""Every method family under 2 gloo processes takes the same steps as 1 process on the same
global batch: the trainer's logged losses agree step by step.

Each run is the recipe's own stage, trained by the real trainer (DDP, sharded epochs, the
batch split over ranks, gathers with gradient, whole-dataset passes gathered from all ranks,
k-means and mining on rank 0). Two things that legitimately differ between 1 and 2
processes are pinned so the comparison is exact:

* BatchNorm: on the CPU each rank normalises with its own half-batch statistics (SyncBatchNorm
  is CUDA-only), so the networks here have BatchNorm replaced by identity;
* augmentation: each rank draws its own random views, so views are made deterministic
  (the images themselves, and their mirror image as the second view).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from cluster_ssl.commands.prepare import prepare
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.trainer import Trainer, TrainSettings
from cluster_ssl.methods.base import StageContext
from cluster_ssl.methods.contrastive import EmbeddingMethod
from cluster_ssl.runtime.distributed import DistInfo
from recipes import RECIPES
from tests.spawned import finish_worker
from tools.step_profile import pick_stage

pytestmark = pytest.mark.slow

WORLD = 2
STEPS = 4
SMALL = {"split": "test", "eval_split": None, "image_size": 8, "kmeans_restarts": 1}
#: what makes a recipe's stage (or ``recipe/stage``) small, besides ``BASE``
BASE = {"batch_size": 64}
SMALLER = {
    "idec": {"hidden_dims": "32,32,64", "update_interval": 2, "tol": 0},
    "scan": {"scan.batch_size": 64, "scan.num_neighbours": 3, "eval_split": "test"},
    "scan/selflabel": {"selflabel.batch_size": 64, "selflabel.confidence_threshold": 0.0},
    "simclr_dec/dec": {"dec.batch_size": 64, "dec.update_interval": 2, "dec.tol": 0},
    "pcl": {"queue_size": 128, "num_prototypes": "4,6", "warmup_epochs": 0},
    "deepcluster": {"num_pseudo_classes": 8, "pca_dim": 16},
}
#: DEC and DCEC train IDEC's method on other networks; simclr_dec's first stage is SimCLR's
COVERED_BY_OTHERS = ("dec", "dcec", "simclr_dec")
#: every recipe of the registry (a new one is tested as it is added), and the later stages
#: whose method differs from the recipe's first
FAMILIES = [name for name in RECIPES.names() if name not in COVERED_BY_OTHERS] + [
    "scan/selflabel",
    "simclr_dec/dec",
]


def without_batchnorm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            without_batchnorm(child)


def deterministic_views(pipeline: nn.Module, images: torch.Tensor):
    """The shapes a pipeline produces, filled with the images (view 2: mirrored)."""
    out = pipeline(images)
    views = out if isinstance(out, tuple | list) else (out,)

    def view(like: torch.Tensor, number: int) -> torch.Tensor:
        x = F.interpolate(images.float() / 255, size=like.shape[-2:], mode="bilinear")
        x = x.expand(-1, like.shape[1], -1, -1).contiguous()
        return x.flip(-1) if number else x

    made = tuple(view(v, i) for i, v in enumerate(views))
    return made if isinstance(out, tuple | list) else made[0]


def losses(recipe: str, out: Path, dist_info: DistInfo) -> list[float]:
    """The trainer's logged loss at each of STEPS steps (written by rank 0)."""
    torch.manual_seed(0)
    name, _, stage_name = recipe.partition("/")
    record = {"recipe": name, "dataset": "digits", "data_root": None}
    prepared = prepare({**record, "overrides": {**SMALL, **BASE, **SMALLER.get(recipe, {})}})
    stage = pick_stage(prepared.stages, stage_name or None)
    stage.epochs, stage.max_steps, stage.eval_every = 1, STEPS, 0
    without_batchnorm(stage.method)
    heldout = None if prepared.eval_dataset is prepared.dataset else prepared.eval_dataset
    ctx = StageContext(
        prepared.dataset, torch.device("cpu"), 0, dist_info, num_workers=0, heldout=heldout
    )
    out.mkdir(parents=True, exist_ok=True)
    logger = RunLogger(out, enabled=dist_info.is_main)
    trainer = Trainer(TrainSettings(seed=0, log_every=1, progress=False), logger)
    trainer.fit(stage, ctx, out / "stage.pt", stage_index=0, resume=None, run_config={})
    if not dist_info.is_main:
        return []
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    EmbeddingMethod.augment = staticmethod(deterministic_views)
    try:
        found = {
            recipe: losses(recipe, Path(out_dir) / recipe, DistInfo(rank, WORLD))
            for recipe in FAMILIES
        }
        if rank == 0:
            (Path(out_dir) / "ddp.json").write_text(json.dumps(found))
    except BaseException:
        dist.destroy_process_group()
        raise
    finish_worker()


@pytest.fixture(scope="module")
def two_process_losses(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[float]]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(str(out / "init"), str(out)), nprocs=WORLD, join=True)
    return json.loads((out / "ddp.json").read_text())


@pytest.mark.parametrize("recipe", FAMILIES)
def test_two_processes_log_the_losses_of_one(
    recipe: str,
    two_process_losses: dict[str, list[float]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(EmbeddingMethod, "augment", staticmethod(deterministic_views))
    one = losses(recipe, tmp_path, DistInfo())
    assert len(one) == STEPS
    assert two_process_losses[recipe] == pytest.approx(one, rel=1e-4, abs=1e-9)

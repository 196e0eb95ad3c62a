"""``cluster-ssl cluster FOLDER``: train on a folder of images and write what it found.

DIR/assignments.csv     path, cluster, confidence for every image read
DIR/clusters/NN.png     the most confident images of each cluster
DIR/embedding.png       2-D map of the embedding (UMAP when installed, else t-SNE)
DIR/report.html         one page showing all of it, opened from disk
DIR/skipped.txt         files left out, with the reason
DIR/summary.json, DIR/stages/  the run itself (``--resume`` continues it)
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from cluster_ssl.commands.folder.k_selection import choose_run_k
from cluster_ssl.commands.folder.outputs import write_outputs
from cluster_ssl.commands.folder.plan import (
    BudgetMeasured,
    budget_settings,
    plan_pace,
    stage_plan,
    start_block,
)
from cluster_ssl.commands.folder.request import FolderRequest
from cluster_ssl.commands.folder.sizing import folder_methods, folder_run_settings
from cluster_ssl.commands.record import RunRequest
from cluster_ssl.commands.train import train
from cluster_ssl.data.folder import scan_images
from cluster_ssl.engine.trainer import Pace, format_duration
from cluster_ssl.runtime.device import resolve_device
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.files import read_json, write_json
from cluster_ssl.runtime.lock import lock_directory
from recipes import RECIPES

DEFAULT_METHOD = "cc"
DEFAULT_AUTO_METHOD = "simclr"


def cluster_folder(request: FolderRequest) -> dict[str, Any]:
    """Train ``request.method`` on the folder's readable images, then write the report;
    the run directory is locked throughout (one writer per run)."""
    out = Path(request.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory; choose another --out")
    with lock_directory(out):
        return _cluster_folder(request)


def _cluster_folder(request: FolderRequest) -> dict[str, Any]:
    auto = request.k is None
    folder = Path(request.folder).expanduser().resolve()  # a run resumes from anywhere
    stored = _stored_run(request.out, folder) if request.resume else {}
    method = (
        request.method or stored.get("recipe") or (DEFAULT_AUTO_METHOD if auto else DEFAULT_METHOD)
    )
    if "num_clusters" in request.overrides:
        raise UserError("give the number of clusters with --k, not --set num_clusters")
    if method not in folder_methods():
        raise UserError(f"--method {method!r} is not one of: {', '.join(folder_methods())}")
    if auto and not RECIPES.get(method).clusters_by_kmeans:
        kmeans = [recipe.name for recipe in RECIPES.values() if recipe.clusters_by_kmeans]
        raise UserError(
            f"--k auto needs a method that clusters its embedding by k-means "
            f"({', '.join(kmeans)}), not {method}; give --k N for {method}"
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
    # sized for the largest k tried when it is chosen
    overrides = folder_run_settings(request, method, readable, high, device)
    planned = {**overrides, **stored.get("overrides", {})}  # a resumed run keeps its own
    plan = stage_plan(method, planned, len(readable))
    budget = None if request.resume else request.time_budget
    print(
        start_block(
            images=len(readable),
            skipped=len(skipped),
            out=request.out,
            method=method,
            settings=planned,
            plan=plan,
            device=device,
            budget=budget,
        ),
        flush=True,
    )
    if request.resume and request.time_budget is not None:
        print("--resume: the run keeps the epochs its --time-budget chose", flush=True)
    if request.resume:  # the options given again must match the run's (it refuses others)
        overrides = {key: overrides[key] for key in _given_keys(request)}
    estimated, speed_choice = None, None
    if budget is not None:  # measure the first steps, then start again at the length that fits
        pace = plan_pace(plan, Pace(clock=request.clock, on_measured=_stop))
        with contextlib.suppress(BudgetMeasured):
            _train(request, method, folder, out, overrides, pace)
        speed_choice = read_json(request.out / "run.json", ("recipe",), "").get("speed_choice")
        chosen = budget_settings(method, overrides, len(readable), pace, budget)
        overrides.update(chosen)  # recorded in run.json: --resume continues with them
        plan = stage_plan(method, overrides, len(readable))
        measured = Pace(step_seconds=pace.step_seconds, refresh_seconds=pace.refresh_seconds)
        estimated = plan_pace(plan, measured).estimate()
        lengths = ", ".join(f"{stage.name} {stage.epochs}" for stage in plan)
        print(
            f"--time-budget {format_duration(budget)}: epochs {lengths} "
            f"(estimated ~{format_duration(estimated)} of training)",
            flush=True,
        )
    pace = plan_pace(plan, Pace(clock=request.clock))
    summary = _train(request, method, folder, out, overrides, pace, speed_choice)
    if estimated is None:
        estimated = pace.estimate()
    summary["estimated_seconds"] = None if estimated is None else round(estimated, 2)
    if pace.first_refined is not None:
        summary["estimated_seconds_after_first_minute"] = round(pace.first_refined, 2)
    summary["training_seconds"] = round(sum(s.get("seconds", 0.0) for s in summary["stages"]), 2)
    if budget is not None:
        summary["time_budget_seconds"] = budget
    write_json(summary, request.out / "summary.json")
    if auto:
        selection = choose_run_k(request.out, device, (low, high), request.num_workers)
        summary = {**summary, "num_clusters": selection["k"], "k_selection": selection}
    prediction = write_outputs(request.out, folder, device, request.num_workers)
    if auto:  # the summary describes the clustering with the chosen k
        sizes = np.bincount(prediction.labels, minlength=prediction.num_clusters)
        summary.update(clusters_used=int((sizes > 0).sum()), cluster_sizes=sizes.tolist())
        write_json(summary, request.out / "summary.json")
    return summary


def _stop(pace: Pace) -> None:
    raise BudgetMeasured


def _train(
    request: FolderRequest,
    method: str,
    folder: Path,
    out: Path,
    overrides: dict[str, Any],
    pace: Pace,
    speed_choice: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``train`` on the folder; ``speed_choice``: the speed settings the run measured
    already (before a ``--time-budget`` restart), kept instead of measured again."""
    return train(
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
            pace=pace,
            speed=request.speed,
            speed_choice=speed_choice,
            speed_trial=request.speed_trial,
        )
    )


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
    stored = read_json(run_file, ("recipe",), "delete it and pass --resume again")
    before = Path(stored.get("data_root") or folder)
    if before.resolve() != folder and before.is_dir():
        raise UserError(
            f"--resume: {out} clustered {before}, not {folder}; give that folder, "
            f"or another --out to cluster this one"
        )
    return stored

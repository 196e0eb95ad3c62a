"""One prepared check of the CUDA path: correctness, paper networks, speed, k-means, accuracy.

    python tools/gpu_check.py OUT_DIR [--device cuda|cpu] [--tiny] [--budget-s 450]
                              [--fmnist DIR]

Runs a list of checks, each in its own ``try``, timed with ``time.perf_counter`` (and
``torch.cuda.synchronize`` on the GPU), and writes ``OUT_DIR/gpu_check.json`` (every
check: name, passed, seconds, numbers, error line, or why it was skipped) and
``OUT_DIR/gpu_check.md`` (a table) after every check, so a run killed by a time limit
still leaves what it measured. Prints one summary line; exits 0 when no check failed
(a skipped check, e.g. no Fashion-MNIST files or the budget spent, is not a failure).

``--tiny`` shrinks every check (16 px, narrow networks, a few steps) so the whole list runs
on a CPU in about a minute: the test of this file runs it so. ``--budget-s`` is the time
after which no new check starts (they are recorded as ``skipped: budget``); each check
also declares about how long it takes, and is skipped when that no longer fits.

docs/GPU_CHECK.md says how to run it on a lent GPU machine and where to record results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

OPTIONAL = ("kornia", "faiss", "wandb")
#: what the package must import without each optional dependency
PACKAGE_IMPORTS = ("cluster_ssl.cli", "cluster_ssl.commands.train", "recipes")
TRAIN_CHILD = "_train_child"  # argv[1] of the subprocess that a kill-and-resume kills


# ------------------------------------------------------------------------------ sizes


@dataclass(frozen=True)
class Sizes:
    """How big every check is: the GPU sizes, or ``--tiny``'s for a CPU smoke run."""

    n: int  # synthetic images per split
    image: int  # side of the synthetic images
    batch: int
    width: float  # ResNet width of the correctness runs
    epochs: int
    steps: int  # DEC-style stages: optimiser steps
    resume_epochs: int
    paper_batch: int | None  # None: the preset's own batch
    paper_width: float | None  # None: the preset's own width
    paper_image: int | None  # None: the preset's own image size
    speed_steps: int
    speed_warmup: int
    speed_batch: int | None  # None: the preset's (512)
    features: int  # rows of the k-means / kNN / mining features
    big_k: int
    compile_backend: str
    loader_workers: int


GPU = Sizes(
    n=1024,
    image=32,
    batch=256,
    width=0.5,
    epochs=2,
    steps=8,
    resume_epochs=4,
    paper_batch=None,
    paper_width=None,
    paper_image=None,
    speed_steps=20,
    speed_warmup=3,
    speed_batch=None,
    features=50_000,
    big_k=1000,
    compile_backend="inductor",
    loader_workers=min(8, max(1, (os.cpu_count() or 2) - 2)),
)
TINY = Sizes(
    n=64,
    image=16,
    batch=32,
    width=0.125,
    epochs=2,
    steps=3,
    resume_epochs=6,
    paper_batch=16,
    paper_width=0.125,
    paper_image=16,
    speed_steps=2,
    speed_warmup=1,
    speed_batch=16,
    features=2000,
    big_k=50,
    compile_backend="aot_eager",  # inductor on a CPU compiles C++ for minutes
    loader_workers=0,
)
FEATURE_DIM = 128
LOSS_RTOL = 0.05  # channels-last / compiled first logged loss against eager's
LOSS_ATOL = 0.02
RESUME_RTOL = 1e-3  # resumed weights against uninterrupted ones, when not bitwise equal


# ------------------------------------------------------------------------------ results


class Skip(Exception):
    """Raised inside a check that cannot run here (missing data, no CUDA): not a failure."""


@dataclass
class Check:
    name: str
    run: Callable[[], dict[str, Any]]
    estimate_s: float  # about how long it takes at the sizes chosen (GPU or tiny)


class Recorder:
    """Runs checks one by one, writing the JSON and Markdown after each."""

    def __init__(self, out: Path, budget_s: float, header: dict[str, Any]) -> None:
        self.out = out
        self.budget_s = budget_s
        self.header = header
        self.results: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def remaining(self) -> float:
        return self.budget_s - self.elapsed()

    def run(self, check: Check) -> dict[str, Any]:
        result: dict[str, Any] = {
            "name": check.name,
            "passed": None,
            "skipped": None,
            "seconds": 0.0,
            "numbers": {},
            "error": None,
        }
        if check.estimate_s > self.remaining():
            result["skipped"] = (
                f"budget: {self.remaining():.0f} s left of {self.budget_s:.0f}, "
                f"the check takes about {check.estimate_s:.0f} s"
            )
        else:
            start = time.perf_counter()
            try:
                numbers = check.run()
                result["numbers"] = numbers
                failures = numbers.pop("_failures", [])
                result["passed"] = not failures
                if failures:
                    result["error"] = "; ".join(failures)
            except Skip as reason:
                result["skipped"] = str(reason)
            except BaseException as error:  # noqa: BLE001 - every failure is a result
                if isinstance(error, KeyboardInterrupt):
                    raise
                result["passed"] = False
                result["error"] = error_line(error)
                result["traceback"] = traceback.format_exc()[-4000:]
            result["seconds"] = round(time.perf_counter() - start, 2)
        self.results.append(result)
        self.write()
        status = "PASS" if result["passed"] else ("SKIP" if result["skipped"] else "FAIL")
        detail = result["error"] or result["skipped"] or ""
        print(f"[{self.elapsed():6.1f} s] {status} {check.name} ({result['seconds']} s) {detail}")
        sys.stdout.flush()
        return result

    def counts(self) -> dict[str, int]:
        return {
            "passed": sum(r["passed"] is True for r in self.results),
            "failed": sum(r["passed"] is False for r in self.results),
            "skipped": sum(r["skipped"] is not None for r in self.results),
        }

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        document = {
            **self.header,
            "seconds": round(self.elapsed(), 2),
            **self.counts(),
            "checks": self.results,
        }
        (self.out / "gpu_check.json").write_text(json.dumps(document, indent=2, default=str))
        (self.out / "gpu_check.md").write_text(markdown(document))


def error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:500]


def compact(numbers: dict[str, Any]) -> str:
    """The numbers of a check on one table cell."""

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) + "}"
        return str(value)

    return "; ".join(f"{key} {fmt(value)}" for key, value in numbers.items()).replace("|", "/")


def markdown(document: dict[str, Any]) -> str:
    lines = [
        "# GPU check",
        "",
        f"device: {document['device_name']} ({document['device']}), tiny: {document['tiny']}, "
        f"budget {document['budget_s']} s, took {document['seconds']} s; "
        f"{document['passed']} passed, {document['failed']} failed, "
        f"{document['skipped']} skipped",
        "",
        f"command: `{document['command']}`",
        "",
        "| check | result | seconds | numbers | error / note |",
        "|---|---|---:|---|---|",
    ]
    for r in document["checks"]:
        status = "pass" if r["passed"] else ("skipped" if r["skipped"] else "**FAIL**")
        note = (r["error"] or r["skipped"] or "").replace("|", "/")
        lines.append(
            f"| {r['name']} | {status} | {r['seconds']} | {compact(r['numbers'])} | {note} |"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds of one call of ``fn`` (synchronised), and what it returned."""
    sync(device)
    start = time.perf_counter()
    value = fn()
    sync(device)
    return time.perf_counter() - start, value


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return None


def synthetic_options(n: int) -> dict[str, Any]:
    return {"n": n, "num_classes": 10, "channels": 3, "seed": 0}


def short_overrides(recipe: Any, sizes: Sizes, n: int) -> dict[str, Any]:
    """A short stage of ``recipe`` on the synthetic images: the settings it has among these
    (a recipe added later gets those of its keys it shares, and its defaults for the rest)."""
    from cluster_ssl.config import setting_keys

    batch = sizes.batch
    wanted: dict[str, Any] = {
        "split": "train",
        "eval_split": "test",
        "image_size": sizes.image,
        "epochs": sizes.epochs,
        "batch_size": batch,
        "eval_every": 0,
        "kmeans_restarts": 1,
        "backbone": "resnet18",
        "width": sizes.width,
        "stem": "cifar",
        # DEC, IDEC, DCEC
        "maxiter": sizes.steps,
        "update_interval": 2,
        "tol": 0,
        # simclr_dec
        "dec.maxiter": sizes.steps,
        "dec.batch_size": batch,
        "dec.update_interval": 2,
        "dec.tol": 0,
        # SCAN
        "scan.epochs": 1,
        "scan.batch_size": batch,
        "scan.num_neighbours": 5,
        "selflabel.epochs": 1,
        "selflabel.batch_size": batch,
        # one SCAN epoch leaves no image above the paper's 0.99 (self-labelling then stops
        # with a UserError, as it should): any confidence passes in a short check
        "selflabel.confidence_threshold": 0.1,
        # DeepCluster
        "num_pseudo_classes": 20,
        "pca_dim": 16,
        # PCL
        "queue_size": min(2 * batch, n),
        "num_prototypes": [10, 20],
        "negative_prototypes": 16,
        "warmup_epochs": 1,
        "estep_kmeans": "propos",  # the paper presets' E-step, on the GPU's torch
    }
    keys = set(setting_keys(recipe.config))
    if "maxiter" in keys:  # autoencoders: a few steps of pretraining embed all in one point
        wanted["epochs"] = 2 * sizes.epochs
    return {key: value for key, value in wanted.items() if key in keys}


def train_run(out: Path, device: str, **request: Any) -> dict[str, Any]:
    """``train(RunRequest(...))`` on the synthetic images, without progress bars."""
    from cluster_ssl.commands.record import RunRequest
    from cluster_ssl.commands.train import train

    options = {
        "dataset": "synthetic",
        "out": out,
        "device": device,
        "progress": False,
        "num_workers": 0,
        # fixed settings: a fresh reference and a killed run must not measure their way to
        # different ones (the speed checks set channels-last and compile themselves)
        "speed": "off",
        **request,
    }
    return train(RunRequest(**options))


def stage_losses(out: Path) -> list[tuple[str, int, float]]:
    """(stage, step, loss) of every logged training step of a run, in order."""
    rows = []
    for line in (out / "metrics.jsonl").read_text().splitlines():
        event = json.loads(line)
        if "loss" in event and event.get("stage") != "final":
            rows.append((event["stage"], event["step"], float(event["loss"])))
    return rows


def final_method_state(summary: dict[str, Any]) -> dict[str, torch.Tensor]:
    return torch.load(summary["checkpoint"], map_location="cpu", weights_only=False)["method"]


def compare_states(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]
) -> tuple[bool, float, str | None]:
    """(bitwise equal, largest |a - b| / max |a| over the tensors, the first differing key)."""
    if a.keys() != b.keys():
        return False, math.inf, f"keys differ: {sorted(set(a) ^ set(b))[:5]}"
    equal, worst, where = True, 0.0, None
    for key, x in a.items():
        y = b[key]
        if not isinstance(x, torch.Tensor):
            continue
        if x.shape != y.shape:
            return False, math.inf, key
        if torch.equal(x, y):
            continue
        equal = False
        x64, y64 = x.double(), y.double()
        scale = max(x64.abs().max().item(), 1e-12)
        diff = (x64 - y64).abs().max().item() / scale
        if diff > worst:
            worst, where = diff, key
    return equal, worst, where


def free_memory(device: torch.device) -> None:
    """Drop the last check's tensors (on the GPU only: a collection takes 0.4 s)."""
    if device.type == "cuda":
        import gc

        gc.collect()
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------ checks


def check_environment(device: torch.device) -> dict[str, Any]:
    numbers: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpus": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        numbers.update(
            device_name=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            bf16=torch.cuda.is_bf16_supported(),
        )
    for name in ("torchvision", "timm", "sklearn", "scipy", *OPTIONAL):
        try:
            module = __import__(name)
            numbers[name] = getattr(module, "__version__", "yes")
        except ImportError:
            numbers[name] = "absent"
    # Does the package import with each optional dependency blocked? One subprocess (torch
    # is imported once): block one, import the package, forget the package, next.
    code = (
        "import importlib, sys, torch\n"
        f"for name in {OPTIONAL!r}:\n"
        "    sys.modules[name] = None\n"
        "    result = 'ok'\n"
        f"    for module in {PACKAGE_IMPORTS!r}:\n"
        "        try:\n"
        "            importlib.import_module(module)\n"
        "        except Exception as e:\n"
        "            line = (str(e).splitlines() or [''])[0]\n"
        "            result = f'{module}: {type(e).__name__}: {line}'\n"
        "            break\n"
        "    print(name + '\\t' + result)\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] in\n"
        f"                   ('cluster_ssl', 'recipes', name, *{OPTIONAL!r})]:\n"
        "        del sys.modules[loaded]\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=180,
    )
    for line in done.stdout.splitlines():
        name, _, result = line.partition("\t")
        numbers[f"imports_without_{name}"] = result
    if done.returncode:
        numbers["import_probe_error"] = done.stderr.strip().splitlines()[-1:]
    return numbers


def check_recipe(recipe_name: str, device: str, sizes: Sizes, scratch: Path) -> dict[str, Any]:
    from recipes import RECIPES

    recipe = RECIPES.get(recipe_name)
    overrides = short_overrides(recipe, sizes, sizes.n)
    out = scratch / f"recipe-{recipe_name}"
    summary = train_run(
        out,
        device,
        recipe=recipe_name,
        overrides=overrides,
        dataset_options=synthetic_options(sizes.n),
    )
    losses = stage_losses(out)
    failures = []
    if not losses:
        failures.append("no loss was logged")
    bad = [f"{stage}@{step}={loss}" for stage, step, loss in losses if not math.isfinite(loss)]
    if bad:
        failures.append(f"non-finite loss: {bad[:3]}")
    if summary["clusters_used"] < 2:
        failures.append(f"clusters used {summary['clusters_used']} < 2")
    checkpoints = sorted(p.name for p in (out / "stages").glob("*.pt"))
    if not Path(summary["checkpoint"]).is_file():
        failures.append(f"no checkpoint {summary['checkpoint']}")
    return {
        "stages": [result.get("stage", result.get("name")) for result in summary["stages"]]
        if summary["stages"] and isinstance(summary["stages"][0], dict)
        else checkpoints,
        "last_loss": {stage: round(loss, 4) for stage, _, loss in losses},
        "clusters_used": summary["clusters_used"],
        "acc": round(summary["acc"], 4),
        "checkpoints": checkpoints,
        "overrides": overrides,
        "_failures": failures,
    }


def check_resume(device: str, sizes: Sizes, scratch: Path) -> dict[str, Any]:
    """SimCLR killed (SIGKILL, in a subprocess) once its first checkpoint exists, resumed,
    against the same run uninterrupted: the final checkpoints' method tensors."""
    from recipes import RECIPES

    recipe = RECIPES.get("simclr")
    overrides = {**short_overrides(recipe, sizes, sizes.n), "epochs": sizes.resume_epochs}
    request = {
        "recipe": "simclr",
        "overrides": overrides,
        "dataset_options": synthetic_options(sizes.n),
        "seed": 0,
    }
    whole = train_run(scratch / "resume-whole", device, **request)
    killed_out = scratch / "resume-killed"
    child = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            TRAIN_CHILD,
            json.dumps({**request, "out": str(killed_out), "device": device}),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    first = killed_out / "stages" / "01-simclr.pt"
    deadline = time.perf_counter() + 300
    while not first.exists():
        if child.poll() is not None:
            raise RuntimeError(
                f"the run to kill exited ({child.returncode}) before its first checkpoint: "
                + child.stderr.read().decode()[-300:]
            )
        if time.perf_counter() > deadline:
            child.kill()
            raise RuntimeError("no first checkpoint within 300 s")
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    killed_at = torch.load(first, map_location="cpu", weights_only=False)
    killed_epoch = killed_at.get("epoch")
    failures = []
    if child.returncode != -signal.SIGKILL:
        failures.append(f"the run finished (exit {child.returncode}) before it was killed")
    resumed = train_run(killed_out, device, resume=True)
    equal, worst, where = compare_states(final_method_state(whole), final_method_state(resumed))
    floor = 0.0
    if not equal and device != "cpu":  # the GPU's own run-to-run noise, for scale
        again = train_run(scratch / "resume-whole-again", device, **request)
        _, floor, _ = compare_states(final_method_state(whole), final_method_state(again))
    tolerance = 0.0 if device == "cpu" else max(RESUME_RTOL, 2 * floor)
    if not equal and worst > tolerance:
        failures.append(f"weights differ: max relative {worst:.3g} at {where}")
    return {
        "killed_at_epoch": killed_epoch,
        "epochs": sizes.resume_epochs,
        "bitwise_equal": equal,
        "max_relative_difference": worst,
        "uninterrupted_run_to_run_difference": floor,
        "acc_whole": round(whole["acc"], 4),
        "acc_resumed": round(resumed["acc"], 4),
        "_failures": failures,
    }


def check_precision(precision: str, device: str, sizes: Sizes, scratch: Path) -> dict[str, Any]:
    from recipes import RECIPES

    if precision == "fp16" and device == "cpu":
        raise Skip("fp16 autocast needs CUDA")
    out = scratch / f"precision-{precision}"
    summary = train_run(
        out,
        device,
        recipe="simclr",
        precision=precision,
        overrides=short_overrides(RECIPES.get("simclr"), sizes, sizes.n),
        dataset_options=synthetic_options(sizes.n),
    )
    losses = stage_losses(out)
    checkpoint = torch.load(summary["checkpoint"], map_location="cpu", weights_only=False)
    scaler = checkpoint.get("scaler") or {}
    failures = [] if losses and all(math.isfinite(x) for _, _, x in losses) else ["loss"]
    if precision == "fp16" and not scaler:
        failures.append("fp16 ran without a loss scaler (empty scaler state)")
    return {
        "loss": round(losses[-1][2], 4) if losses else None,
        "loss_scale": scaler.get("scale") if scaler else None,
        "clusters_used": summary["clusters_used"],
        "_failures": failures,
    }


def check_speed_options(device: str, sizes: Sizes, scratch: Path) -> dict[str, Any]:
    """Eager, --channels-last and --compile: the first logged loss of each, same seed."""
    from recipes import RECIPES

    overrides = {**short_overrides(RECIPES.get("simclr"), sizes, sizes.n), "epochs": 1}
    numbers: dict[str, Any] = {}
    failures = []
    variants = {
        "eager": {},
        "channels_last": {"channels_last": True},
        "compile": {"compile_backend": sizes.compile_backend},
    }
    for label, options in variants.items():
        out = scratch / f"options-{label.replace('+', '-')}"
        start = time.perf_counter()
        try:
            train_run(
                out,
                device,
                recipe="simclr",
                overrides=overrides,
                dataset_options=synthetic_options(sizes.n),
                **options,
            )
        except Exception as error:  # noqa: BLE001 - one variant's failure, the others still run
            failures.append(f"{label}: {error_line(error)}")
            continue
        losses = stage_losses(out)
        numbers[f"{label}_loss"] = round(losses[0][2], 5)
        numbers[f"{label}_s"] = round(time.perf_counter() - start, 1)
    eager = numbers.get("eager_loss")
    for label in list(variants)[1:]:
        value = numbers.get(f"{label}_loss")
        close = (
            value is None
            or eager is None
            or abs(value - eager) <= LOSS_ATOL + LOSS_RTOL * abs(eager)
        )
        if not close:
            failures.append(f"{label} loss {value} vs eager {eager}")
    numbers["compile_backend"] = sizes.compile_backend
    numbers["_failures"] = failures
    return numbers


def paper_overrides(recipe_name: str, preset: str, sizes: Sizes) -> tuple[dict[str, Any], Any]:
    """The recipe's ``preset`` settings as overrides on the synthetic images (its splits and
    evaluation dropped), one epoch; and the batch it trains at."""
    from recipes import RECIPES

    recipe = RECIPES.get(recipe_name)
    settings = {
        key: value
        for key, value in recipe.preset(preset).items()
        if key not in ("split", "eval_split", "eval_every", "epochs")
    }
    settings.update(split="train", eval_split="test", eval_every=0, epochs=1, kmeans_restarts=1)
    if sizes.paper_batch is not None:
        settings["batch_size"] = sizes.paper_batch
    if sizes.paper_width is not None:
        settings["width"] = sizes.paper_width
    if sizes.paper_image is not None:
        settings["image_size"] = sizes.paper_image
    from cluster_ssl.config import build_config

    config = build_config(recipe.config, {}, settings)
    return settings, config


def check_paper_network(
    recipe_name: str, preset: str, side: int, device: str, sizes: Sizes, scratch: Path
) -> dict[str, Any]:
    """A few steps of the preset's network at the preset's batch (synthetic images of
    ``side`` px unless the preset sets its own image size)."""
    overrides, config = paper_overrides(recipe_name, preset, sizes)
    overrides.setdefault("image_size", side)
    n = 3 * config.batch_size  # three steps an epoch
    free_memory(torch.device(device))
    reset_peak(torch.device(device))
    out = scratch / f"paper-{recipe_name}-{preset}"
    summary = train_run(
        out, device, recipe=recipe_name, overrides=overrides, dataset_options=synthetic_options(n)
    )
    losses = stage_losses(out)
    failures = [] if losses and all(math.isfinite(x) for _, _, x in losses) else ["loss"]
    return {
        "backbone": config.backbone,
        "width": config.width,
        "stem": config.stem,
        "image_size": overrides["image_size"],
        "batch": config.batch_size,
        "loss": round(losses[-1][2], 4) if losses else None,
        "train_s": summary["stages"][0].get("seconds") if summary["stages"] else None,
        "peak_mib": peak_mib(torch.device(device)),
        "_failures": failures,
    }


def check_speed(
    recipe_name: str, stage: str | None, device: str, sizes: Sizes, lightly: bool
) -> dict[str, Any]:
    """images/s and peak memory: ours (tools/step_profile.py), the bare backbone's forward +
    backward on the same inputs (the floor), and optionally a lightly-style DataLoader loop."""
    from tools.step_profile import profile_stage

    dev = torch.device(device)
    overrides, config = paper_overrides(recipe_name, "cifar10", sizes)
    overrides["image_size"] = sizes.paper_image or 32
    # the same network for every recipe: the CIFAR-10 paper network (CC's own is a ResNet-34)
    overrides.update(backbone="resnet18", stem="cifar")
    if recipe_name == "scan":
        overrides["scan.num_neighbours"] = 5
    batch = sizes.speed_batch or 512
    free_memory(dev)
    reset_peak(dev)
    profile = profile_stage(
        recipe_name,
        "synthetic",
        overrides=overrides,
        stage_name=stage,
        batch_size=batch,
        steps=sizes.speed_steps,
        warmup=sizes.speed_warmup,
        device_spec=device,
        num_workers=0,
        bare_repeats=3,
        checkpoint_every=10**6,
    )
    step = profile.step_seconds
    numbers: dict[str, Any] = {
        "batch": batch,
        "image_size": overrides["image_size"],
        "ours_img_s": round(batch / step, 1),
        "ours_peak_mib": peak_mib(dev) if dev.type == "cuda" else round(profile.peak_memory_mib),
        "bare_img_s": round(batch / profile.bare_seconds, 1) if profile.bare_seconds else None,
        "overhead_ratio": round(profile.overhead_ratio, 3) if profile.overhead_ratio else None,
        "ms_per_step": {
            section: round(profile.per_step(section) * 1e3, 2)
            for section in ("data", "augment", "forward_backward", "optimizer", "step_refresh")
        },
    }
    if lightly:
        numbers.update(lightly_loop(dev, config, batch, overrides["image_size"], sizes))
    return numbers


def lightly_loop(
    device: torch.device, config: Any, batch: int, side: int, sizes: Sizes
) -> dict[str, Any]:
    """The loop of lightly's benchmarks: torchvision v2 transforms on uint8 tensors in
    DataLoader workers, two views, two forward passes through backbone + projection head,
    NT-Xent, SGD; on the same backbone as ours."""
    from torch import nn

    from cluster_ssl.augment.stats import dataset_stats
    from cluster_ssl.data.synthetic import make_synthetic
    from cluster_ssl.losses.contrastive import nt_xent
    from cluster_ssl.models.backbones import build_backbone
    from cluster_ssl.runtime.device import autocast, resolve_precision
    from tools.benchmark import _torchvision_simclr, _TorchvisionViews

    images, _ = make_synthetic(2048, 10, side, 3, 0)
    mean, std = dataset_stats("cifar10")
    steps = sizes.speed_steps
    views = _TorchvisionViews(
        torch.from_numpy(images),
        batch * (steps + sizes.speed_warmup),
        _torchvision_simclr(side, mean, std),
    )
    loader = torch.utils.data.DataLoader(
        views,
        batch_size=batch,
        num_workers=sizes.loader_workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=False,
        prefetch_factor=4 if sizes.loader_workers else None,
    )
    backbone = build_backbone(config.backbone, in_channels=3, stem=config.stem, width=config.width)
    model = nn.Sequential(
        backbone,
        nn.Linear(backbone.feature_dim, 512),
        nn.ReLU(inplace=True),
        nn.Linear(512, 128),
    ).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    precision = resolve_precision("auto", device)
    free_memory(device)
    reset_peak(device)
    start = None
    done = 0
    for index, (a, b) in enumerate(loader):
        if index == sizes.speed_warmup:
            sync(device)
            start = time.perf_counter()
        a, b = a.to(device, non_blocking=True), b.to(device, non_blocking=True)
        with autocast(device, precision):
            loss = nt_xent(model(a).float(), model(b).float(), 0.1, gather=False)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if start is not None:
            done += len(a)
    sync(device)
    seconds = time.perf_counter() - start
    return {
        "lightly_style_img_s": round(done / seconds, 1),
        "lightly_style_peak_mib": peak_mib(device),
        "lightly_style_workers": sizes.loader_workers,
    }


def features_on(device: torch.device, sizes: Sizes) -> tuple[np.ndarray, torch.Tensor]:
    from tools.kmeans_backends import clustered_features

    x = clustered_features(sizes.features, FEATURE_DIM)
    return x, torch.from_numpy(x).to(device)


def check_refreshes(device: str, sizes: Sizes) -> dict[str, Any]:
    """DEC's P refresh (Student-t Q, then P, over every row) and SCAN's neighbour mining
    (k = 20, exact, on the device) on N x 128 features."""
    from cluster_ssl.cluster.neighbours import mine_neighbours
    from cluster_ssl.cluster.student_t import soft_assign, target_distribution

    dev = torch.device(device)
    _, x = features_on(dev, sizes)
    centres = x[:10].clone()

    def refresh() -> torch.Tensor:
        return target_distribution(soft_assign(x, centres))

    refresh()  # warm-up (kernels, allocator)
    p_s, p = timed(dev, refresh)
    rows_ok = torch.allclose(p.sum(1), torch.ones(len(p), device=dev), atol=1e-4)
    mine_neighbours(x[:1000], 20)  # warm-up
    mine_s, neighbours = timed(dev, lambda: mine_neighbours(x, 20))
    failures = [] if rows_ok else ["P rows do not sum to 1"]
    if tuple(neighbours.shape) != (len(x), 20):
        failures.append(f"neighbours shape {tuple(neighbours.shape)}")
    return {
        "n": len(x),
        "dim": FEATURE_DIM,
        "dec_p_refresh_ms": round(p_s * 1e3, 2),
        "scan_mining_s": round(mine_s, 3),
        "_failures": failures,
    }


def check_kmeans_knn(device: str, sizes: Sizes) -> dict[str, Any]:
    """k-means (one start, 20 iterations) and exact kNN (k = 20): the torch backend on the
    device against faiss-cpu (when importable) on the same features."""
    from cluster_ssl.cluster.backend import import_faiss
    from cluster_ssl.cluster.kmeans import kmeans
    from cluster_ssl.cluster.knn import knn

    dev = torch.device(device)
    x_np, x = features_on(dev, sizes)
    numbers: dict[str, Any] = {"n": len(x_np), "dim": FEATURE_DIM}
    has_faiss = import_faiss() is not None
    numbers["faiss"] = has_faiss
    failures = []
    kmeans(x[:2000], 10, n_init=1, n_iter=2, backend="torch")  # warm-up
    for k in (10, sizes.big_k):
        seconds, result = timed(
            dev, lambda k=k: kmeans(x, k, n_init=1, n_iter=20, seed=0, backend="torch")
        )
        numbers[f"kmeans_k{k}_torch_s"] = round(seconds, 3)
        numbers[f"kmeans_k{k}_torch_inertia"] = round(float(result.inertia), 2)
        used = len(np.unique(result.labels))
        if used < min(k, 2):
            failures.append(f"k-means k={k} used {used} clusters")
        if has_faiss:
            seconds, ref = timed(
                torch.device("cpu"),
                lambda k=k: kmeans(x_np, k, n_init=1, n_iter=20, seed=0, backend="faiss"),
            )
            numbers[f"kmeans_k{k}_faiss_cpu_s"] = round(seconds, 3)
            numbers[f"kmeans_k{k}_faiss_inertia"] = round(float(ref.inertia), 2)
    seconds, (_, torch_idx) = timed(dev, lambda: knn(x, 20, backend="torch"))
    numbers["knn20_torch_s"] = round(seconds, 3)
    if has_faiss:
        seconds, (_, faiss_idx) = timed(torch.device("cpu"), lambda: knn(x_np, 20, backend="faiss"))
        numbers["knn20_faiss_cpu_s"] = round(seconds, 3)
        agree = np.mean(
            [
                len(set(a) & set(b)) / 20
                for a, b in zip(torch_idx[:2000], faiss_idx[:2000], strict=True)
            ]
        )
        numbers["knn_agreement"] = round(float(agree), 4)
        if agree < 0.99:
            failures.append(f"torch and faiss neighbours agree on {agree:.3f} only")
    numbers["_failures"] = failures
    return numbers


#: CC on Fashion-MNIST's test split, sized for a GPU (over the fashion-mnist CPU preset)
FMNIST_GPU = {
    "split": "test",
    "eval_split": "test",
    "backbone": "resnet18",
    "width": 1.0,
    "stem": "cifar",
    "image_size": 28,
    "batch_size": 256,
    "eval_every": 0,
    "kmeans_restarts": 1,
}
FMNIST_TINY = {**FMNIST_GPU, "width": 0.125, "image_size": 16, "batch_size": 128, "epochs": 1}
FMNIST_TEST_IMAGES = 10_000


def check_accuracy(
    fmnist: str | None,
    device: str,
    sizes: Sizes,
    tiny: bool,
    scratch: Path,
    seconds_for_it: float,
    cc_img_s: float | None,
) -> dict[str, Any]:
    from cluster_ssl.data.mnist import FASHION_MNIST, FILES, find_idx_file

    if fmnist is None:
        raise Skip("no --fmnist DIR given")
    root = Path(fmnist)
    missing = [stem for stem in FILES["test"] if find_idx_file(FASHION_MNIST, root, stem) is None]
    if missing:
        raise Skip(f"no Fashion-MNIST test IDX files under {root} ({', '.join(missing)})")
    overrides = dict(FMNIST_TINY if tiny else FMNIST_GPU)
    if not tiny:
        # epochs from CC's measured speed (at 32 px; 28 px is faster), 60% of the time left
        # for training (start-up, the evaluation pass and k-means take the rest)
        rate = cc_img_s or 4000.0
        overrides["epochs"] = max(
            1, min(200, int(0.6 * seconds_for_it * rate / FMNIST_TEST_IMAGES))
        )
    out = scratch / "accuracy-cc-fmnist"
    summary = train_run(
        out,
        device,
        recipe="cc",
        dataset="fashion-mnist",
        data_root=str(root.resolve()),
        overrides=overrides,
    )
    return {
        "epochs": overrides["epochs"],
        "acc": round(summary["acc"], 4),
        "nmi": round(summary["nmi"], 4),
        "ari": round(summary["ari"], 4),
        "clusters_used": summary["clusters_used"],
        "train_s": summary["seconds"],
        "settings": overrides,
        "_failures": [] if summary["clusters_used"] >= 2 else ["fewer than 2 clusters used"],
    }


# ------------------------------------------------------------------------------ main


def build_checks(args: argparse.Namespace, recorder: Recorder, scratch: Path) -> list[Check]:
    sizes = TINY if args.tiny else GPU
    device = args.device
    dev = torch.device(device)
    gpu = not args.tiny

    def est(gpu_s: float, tiny_s: float) -> float:
        return gpu_s if gpu else tiny_s

    try:
        from recipes import RECIPES

        recipe_names = RECIPES.names()
    except Exception as error:  # noqa: BLE001 - reported by each recipe's check
        recipe_names = []
        import_error = error
    checks = [Check("environment", lambda: check_environment(dev), est(20, 10))]
    if recipe_names:
        for name in recipe_names:
            checks.append(
                Check(
                    f"correctness:{name}",
                    lambda name=name: check_recipe(name, device, sizes, scratch),
                    est(25, 3),
                )
            )
    else:

        def fail() -> dict[str, Any]:
            raise RuntimeError(f"import recipes failed: {error_line(import_error)}")

        checks.append(Check("correctness:import", fail, 0))
    checks += [
        Check("resume:kill-and-resume", lambda: check_resume(device, sizes, scratch), est(50, 12)),
        Check(
            "precision:fp16", lambda: check_precision("fp16", device, sizes, scratch), est(15, 2)
        ),
        Check(
            "precision:bf16", lambda: check_precision("bf16", device, sizes, scratch), est(15, 3)
        ),
        Check(
            "options:channels-last+compile",
            lambda: check_speed_options(device, sizes, scratch),
            est(90, 15),
        ),
        Check(
            "paper-network:simclr-cifar10",
            lambda: check_paper_network("simclr", "cifar10", 32, device, sizes, scratch),
            est(20, 3),
        ),
        Check(
            "paper-network:simclr-stl10",
            lambda: check_paper_network("simclr", "stl10", 96, device, sizes, scratch),
            est(25, 3),
        ),
        Check(
            "paper-network:cc-cifar10",
            lambda: check_paper_network("cc", "cifar10", 32, device, sizes, scratch),
            est(30, 3),
        ),
        Check("speed:simclr", lambda: check_speed("simclr", None, device, sizes, True), est(40, 8)),
        Check("speed:cc", lambda: check_speed("cc", None, device, sizes, False), est(25, 3)),
        Check(
            "speed:scan-pretext",
            lambda: check_speed("scan", "pretext", device, sizes, False),
            est(20, 3),
        ),
        Check("refresh:dec-p+scan-mining", lambda: check_refreshes(device, sizes), est(10, 2)),
        Check("kmeans-knn:torch-vs-faiss", lambda: check_kmeans_knn(device, sizes), est(60, 5)),
    ]

    def accuracy() -> dict[str, Any]:
        cc = next((r for r in recorder.results if r["name"] == "speed:cc" and r["passed"]), None)
        rate = cc["numbers"].get("ours_img_s") if cc else None
        seconds = max(30.0, min(240.0, recorder.remaining() - 20))
        return check_accuracy(args.fmnist, device, sizes, args.tiny, scratch, seconds, rate)

    checks.append(Check("accuracy:cc-fashion-mnist", accuracy, est(60, 2)))
    return checks


def train_child(request_json: str) -> int:
    """The subprocess of the kill-and-resume check: one ``train`` run, killed by its parent."""
    request = json.loads(request_json)
    train_run(Path(request.pop("out")), request.pop("device"), **request)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="shrink every check (CPU smoke run)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="start no check after this")
    parser.add_argument("--fmnist", help="folder with Fashion-MNIST's IDX files (accuracy check)")
    parser.add_argument(
        "--only", help="comma-separated prefixes of the checks to run (e.g. speed,kmeans)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == TRAIN_CHILD:
        return train_child(argv[1])
    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but CUDA is not available (use --device cpu --tiny)")
        return 2
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    header = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.machine(),
        "tiny": args.tiny,
        "budget_s": args.budget_s,
        "command": " ".join(["python", "tools/gpu_check.py", *argv]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    recorder = Recorder(out, args.budget_s, header)
    with tempfile.TemporaryDirectory(prefix="gpu-check-", dir=out) as scratch:
        checks = build_checks(args, recorder, Path(scratch))
        if args.only:
            prefixes = tuple(args.only.split(","))
            checks = [c for c in checks if c.name.startswith(prefixes)]
        for check in checks:
            recorder.run(check)
            free_memory(dev)
    counts = recorder.counts()
    print(
        f"gpu_check: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped of {len(recorder.results)} checks in "
        f"{recorder.elapsed():.0f} s on {header['device_name']} -> {out / 'gpu_check.md'}"
    )
    return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

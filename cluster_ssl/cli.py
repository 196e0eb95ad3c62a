"""The ``cluster-ssl`` command: train, eval, cluster, predict, list.

User mistakes (a missing data root, an unknown dataset, a bad ``--set`` key...) end with one
line ``error: ...`` on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from cluster_ssl.config import DEFAULT_DATASET, DEFAULT_RECIPE, parse_assignments
from cluster_ssl.runtime.choices import (
    DEVICE_CHOICES,
    PRECISION_CHOICES,
    SPEED_CHOICES,
    WANDB_MODES,
)
from cluster_ssl.runtime.errors import UserError


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (``--workers``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): override a recipe setting."""
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe setting (repeatable)",
    )


def add_speed_choice(parser: argparse.ArgumentParser) -> None:
    """``--speed auto|off``: measure the settings that change speed, not the numbers."""
    parser.add_argument(
        "--speed",
        choices=SPEED_CHOICES,
        help="auto (default): at the start, time a few steps of the settings that leave the "
        "numbers as they are (channels-last, the batch of whole-dataset passes, threads vs "
        "DataLoader workers for image folders, torch.compile on CUDA where it pays back) "
        "and keep the fastest; printed, recorded in run.json and kept by --resume. "
        "off: the fixed defaults",
    )


def add_speed_options(parser: argparse.ArgumentParser) -> None:
    """Options of the trainer that change speed and memory, not the recipe."""
    parser.add_argument(
        "--accumulate",
        type=int,
        help="forward/backward passes per optimiser step (gradient accumulation; default 1): "
        "the batch size stays the effective batch",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="NHWC convolutions (faster on GPUs)"
    )
    parser.add_argument(
        "--compile",
        nargs="?",
        const="inductor",
        metavar="BACKEND",
        help="torch.compile the backbone (backend default inductor)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        metavar="N",
        help="write the stage checkpoint every N epochs (default 1) and at the stage's end; "
        "a killed run resumes from the last one",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cluster-ssl", description="Self-supervised deep clustering of images."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="run a recipe (a paper's pipeline) on a dataset")
    train.add_argument(
        "recipe",
        nargs="?",
        help=f"recipe name (default {DEFAULT_RECIPE}); see `cluster-ssl list`",
    )
    train.add_argument(
        "--dataset",
        help=f"dataset name (default {DEFAULT_DATASET}, built in)",
    )
    train.add_argument("--data-root", help="directory holding the dataset's files")
    train.add_argument(
        "--out", type=Path, help="run directory (default: a new runs/RECIPE-DATASET[-N])"
    )
    train.add_argument(
        "--download",
        action="store_true",
        help="fetch the dataset into --data-root first (needs a network)",
    )
    train.add_argument("--epochs", type=int, help="length of the recipe's main stage")
    add_set_option(train)
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    train.add_argument(
        "--precision", choices=PRECISION_CHOICES, help="autocast dtype (default auto)"
    )
    train.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        help="start the backbone (or autoencoder) from another run's stage checkpoint or "
        "run directory; keys are checked strictly",
    )
    add_speed_options(train)
    add_speed_choice(train)
    train.add_argument("--wandb", choices=WANDB_MODES, default="disabled")
    train.add_argument(
        "--workers",
        type=non_negative_int,
        default=2,
        help="DataLoader workers for file-backed datasets",
    )
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    evaluate = commands.add_parser("eval", help="score a checkpoint or a run directory")
    evaluate.add_argument("checkpoint", type=Path)
    evaluate.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    evaluate.add_argument("--data-root", help="where the dataset lives now, if it moved")
    evaluate.add_argument(
        "--download",
        action="store_true",
        help="fetch the dataset into --data-root first if it is missing (needs a network)",
    )
    evaluate.add_argument(
        "--split",
        help="score this split (train, test, train+test, ...) instead of the run's eval split",
    )
    evaluate.add_argument(
        "--report", type=Path, help="also write a report (grids, map, confusion) to this folder"
    )
    evaluate.add_argument(
        "--workers",
        type=non_negative_int,
        default=2,
        help="DataLoader workers for file-backed datasets",
    )

    cluster = commands.add_parser(
        "cluster", help="cluster a folder of your own images and write a report"
    )
    cluster.add_argument("folder", type=Path, help="folder of images (searched recursively)")
    cluster.add_argument(
        "--k", required=True, help="number of clusters, or auto (chosen by silhouette)"
    )
    cluster.add_argument(
        "--k-range", help="with --k auto: the k tried, LOW:HIGH (default 2:min(20, images))"
    )
    cluster.add_argument("--out", type=Path, required=True, help="output directory")
    cluster.add_argument(
        "--method",
        help="the recipe that trains: cc by default, simclr with --k auto; every choice is "
        "listed by `cluster-ssl list` under 'cluster --method'",
    )
    cluster.add_argument("--backbone", help="resnet18|resnet34|resnet50|timm:NAME")
    cluster.add_argument("--weights", help="start the backbone from these weights (strict)")
    cluster.add_argument(
        "--epochs",
        type=int,
        help="length of the first stage (default: by folder size); SCAN's later stages take "
        "--set scan.epochs=N / selflabel.epochs=N",
    )
    cluster.add_argument(
        "--time-budget",
        help="size the training to fit this time (90s, 10m, 1h): the first steps are timed, "
        "then the epochs are chosen, printed and kept for --resume",
    )
    add_set_option(cluster)
    cluster.add_argument("--seed", type=int, help="random seed (default 0)")
    cluster.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    cluster.add_argument(
        "--workers", type=non_negative_int, default=2, help="image-decoding processes"
    )
    add_speed_choice(cluster)
    cluster.add_argument("--resume", action="store_true", help="continue the run in --out")
    cluster.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    predict = commands.add_parser(
        "predict", help="assign new images to the clusters of a finished run"
    )
    predict.add_argument("checkpoint", type=Path, help="a run directory or stage checkpoint")
    predict.add_argument("images", type=Path, nargs="+", help="image files and/or folders")
    predict.add_argument("--out", type=Path, required=True, help="CSV to write")
    predict.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    predict.add_argument(
        "--workers", type=non_negative_int, default=2, help="image-decoding processes"
    )

    config = commands.add_parser(
        "config", help="print every setting a train command would use (its config.json)"
    )
    config.add_argument("recipe", help="recipe name; see `cluster-ssl list`")
    config.add_argument("--dataset", help=f"whose preset applies (default {DEFAULT_DATASET})")
    add_set_option(config)

    export = commands.add_parser(
        "export", help="write a clustering's images by cluster (folders, CSV, FiftyOne)"
    )
    export.add_argument("run", type=Path, help="the --out folder of `cluster-ssl cluster`")
    export.add_argument("--to", type=Path, help="output folder (default RUN/export-FORMAT)")
    export.add_argument(
        "--format", dest="fmt", choices=["folders", "csv", "fiftyone"], default="folders"
    )
    export.add_argument("--copy", action="store_true", help="copy files instead of linking")
    export.add_argument(
        "--names", type=Path, help="cluster names and merges saved from report.html (JSON)"
    )

    commands.add_parser("list", help="list recipes, datasets and methods")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "cluster":
            return _cluster(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "config":
            return _config(args)
        if args.command == "export":
            return _export(args)
        return _list()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(_interrupted(args), file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as error:
        from cluster_ssl.runtime.memory import is_out_of_memory  # torch is loaded by now

        if not is_out_of_memory(error):
            raise
        print(
            "error: out of memory: the settings ask for more than this machine has; lower "
            "the sizes you set (--set image_size / batch_size / width / hidden_dims ...)",
            file=sys.stderr,
        )
        return 2
    except BrokenPipeError:  # ``cluster-ssl list | head``: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _interrupted(args: argparse.Namespace) -> str:
    """What a Ctrl-C leaves: a run to ``--resume`` only once its run.json was written."""
    out = getattr(args, "out", None)
    if args.command in ("train", "cluster") and out is not None and (out / "run.json").is_file():
        return f"interrupted; continue with the same command and --resume (run in {out})"
    return "interrupted; nothing to resume was written"


def _train(args: argparse.Namespace) -> int:
    from cluster_ssl.commands.record import RunRequest
    from cluster_ssl.commands.train import train
    from cluster_ssl.runtime.distributed import shutdown

    overrides: dict[str, object] = parse_assignments(args.assignments)
    if args.epochs is not None:
        if args.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {args.epochs}")
        overrides["epochs"] = args.epochs
    if args.accumulate is not None and args.accumulate < 1:
        raise UserError(f"--accumulate must be at least 1, got {args.accumulate}")
    if args.checkpoint_every < 1:
        raise UserError(f"--checkpoint-every must be at least 1, got {args.checkpoint_every}")
    if args.resume and args.out is None:
        raise UserError("--resume needs --out DIR, the run directory to continue")
    out = args.out or _fresh_out_dir(args.recipe or DEFAULT_RECIPE, args.dataset or DEFAULT_DATASET)
    summary = train(
        RunRequest(
            recipe=args.recipe,
            dataset=args.dataset,
            out=out,
            data_root=_absolute(args.data_root),  # the run resumes and evaluates from anywhere
            download=args.download,
            overrides=overrides,
            seed=args.seed,
            device=args.device,
            precision=args.precision,
            accumulate=args.accumulate,
            init_from=_absolute(args.init_from),
            channels_last=args.channels_last,
            compile_backend=args.compile,
            checkpoint_every=args.checkpoint_every,
            speed=args.speed,
            wandb=args.wandb,
            resume=args.resume,
            progress=not args.no_progress,
            num_workers=args.workers,
        )
    )
    shutdown()
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 reports
        print(_result_line(summary))
        print(f"run directory: {out}")
    return 0


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _fresh_out_dir(recipe: str, dataset: str) -> Path:
    base = Path("runs") / f"{recipe}-{dataset}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _result_line(result: dict) -> str:
    parts = [f"{key.upper()} {result[key]:.4f}" for key in ("acc", "nmi", "ari") if key in result]
    parts.append(f"clusters used {result['clusters_used']}/{result['num_clusters']}")
    return "  ".join(parts)


def _cluster(args: argparse.Namespace) -> int:
    if args.epochs is not None and args.epochs < 1:  # arguments first, before torch loads
        raise UserError(f"--epochs must be at least 1, got {args.epochs}")
    budget = None if args.time_budget is None else parse_duration(args.time_budget)
    if budget is not None and args.epochs is not None:
        raise UserError("--time-budget chooses the epochs; give it or --epochs, not both")
    k, k_range = _k_options(args.k, args.k_range)
    if k is not None and k < 2:
        raise UserError(f"--k {k}: give at least 2 clusters, or --k auto")
    if not args.folder.expanduser().is_dir():
        raise UserError(f"image folder {args.folder} does not exist or is not a directory")
    from cluster_ssl.commands.folder.cluster import FolderRequest, cluster_folder

    summary = cluster_folder(
        FolderRequest(
            folder=args.folder,
            k=k,
            k_range=k_range,
            out=args.out,
            method=args.method,
            backbone=args.backbone,
            weights=args.weights,
            epochs=args.epochs,
            overrides=parse_assignments(args.assignments),
            seed=args.seed,
            device=args.device,
            resume=args.resume,
            progress=not args.no_progress,
            num_workers=args.workers,
            speed=args.speed,
            time_budget=budget,
        )
    )
    if "k_selection" in summary:
        scores = summary["k_selection"]["scores"]
        print("k  silhouette")
        for value in sorted(scores, key=int):
            print(f"{int(value):<3}{scores[value]:.4f}")
        print(f"chose k = {summary['k_selection']['k']} (highest silhouette)")
        from cluster_ssl.report.quality import k_warning

        if warning := k_warning({int(k): float(v) for k, v in scores.items()}):
            print(f"warning: {warning}")
    print(_result_line(summary))
    sizes = summary.get("cluster_sizes", [])
    print(f"cluster sizes: {', '.join(f'{i}: {n}' for i, n in enumerate(sizes))}")
    listed = args.out / "skipped.txt"
    if skipped := (listed.read_bytes().splitlines() if listed.is_file() else []):
        print(f"{len(skipped)} files skipped, listed in {args.out / 'skipped.txt'}")
    print(f"time: {summary.get('seconds', 0):.0f} s", end="")
    if summary.get("estimated_seconds") is not None:
        later = summary.get("estimated_seconds_after_first_minute")
        print(
            f" (training {summary['training_seconds']:.0f} s, estimated "
            f"{summary['estimated_seconds']:.0f} s"
            + ("" if later is None else f", {later:.0f} s after the first minute")
            + ")",
            end="",
        )
    print()
    print(f"report: {args.out / 'report.html'}")
    return 0


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """``90s``, ``10m``, ``1h`` (or ``1.5h``) in seconds; a UserError for anything else."""
    value, unit = text.strip()[:-1], text.strip()[-1:].lower()
    try:
        seconds = float(value) * DURATION_UNITS[unit]
    except (KeyError, ValueError):
        raise UserError(
            f"--time-budget {text!r}: write a number and s, m or h, e.g. 90s, 10m, 1h"
        ) from None
    if not seconds > 0 or seconds == float("inf"):
        raise UserError(f"--time-budget {text!r}: give a time above zero, e.g. 90s, 10m, 1h")
    return seconds


def _k_options(k: str, k_range: str | None) -> tuple[int | None, tuple[int, int] | None]:
    """``--k N`` or ``--k auto`` [``--k-range LOW:HIGH``] as (k or None, range or None)."""
    if k == "auto":
        if k_range is None:
            return None, None
        try:
            low, high = (int(part) for part in k_range.split(":"))
        except ValueError:
            raise UserError(f"--k-range {k_range!r}: write it LOW:HIGH, e.g. 2:20") from None
        return None, (low, high)
    if k_range is not None:
        raise UserError("--k-range goes with --k auto; drop it or use --k auto")
    try:
        return int(k), None
    except ValueError:
        raise UserError(f"--k {k!r}: give a number of clusters or auto") from None


def _predict(args: argparse.Namespace) -> int:
    from cluster_ssl.commands.predict import predict_images

    prediction, skipped = predict_images(
        args.checkpoint, args.images, args.out, args.device, args.workers
    )
    for path, reason in skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(f"{len(prediction.labels)} images assigned to clusters: {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from cluster_ssl.commands.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint,
        args.device,
        args.data_root,
        args.workers,
        split=args.split,
        report=args.report,
        download=args.download,
    )

    print(
        f"evaluated {result['checkpoint']}: stage {result['stage']!r}, epoch {result['epoch']},"
        f" step {result['step']} ({result['recipe']} on {result['dataset']}, "
        f"{result['split']} split)"
    )
    print(_result_line(result))
    if args.report is not None:
        print(f"report: {args.report / 'report.html'}")
    print(json.dumps({k: v for k, v in result.items() if k != "cluster_sizes"}))
    return 0


def _export(args: argparse.Namespace) -> int:
    from cluster_ssl.commands.export import export_run

    print(f"exported to {export_run(args.run, args.to, args.fmt, args.copy, args.names)}")
    return 0


def _config(args: argparse.Namespace) -> int:
    from cluster_ssl.commands.config_card import resolved_settings

    settings = resolved_settings(args.recipe, args.dataset, parse_assignments(args.assignments))
    print(json.dumps(settings, indent=2, sort_keys=True, default=list))
    return 0


def _list() -> int:
    from cluster_ssl.commands.listing import listing

    print(listing(width=shutil.get_terminal_size().columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())

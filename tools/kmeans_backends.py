"""k-means and exact kNN: the torch backend against the faiss one (and scikit-learn's KMeans).

    OMP_NUM_THREADS=2 python tools/kmeans_backends.py [--n 70000] [--dim 128] [--k 10,1000]
        [--n-init 1] [--iterations 50] [--knn-n 50000] [--knn-k 20] [--repeats 3]
        [--device cpu] [--skip-sklearn] [--skip-knn]

k-means: :func:`cluster_ssl.cluster.kmeans.kmeans` with ``backend="faiss"`` and
``backend="torch"``, and scikit-learn's ``KMeans`` (Lloyd, greedy k-means++ seeding like
the torch backend, ``tol=0``), each with ``--n-init`` restarts of at most ``--iterations``
Lloyd iterations, on ``--n`` x ``--dim`` float32 features around 10 Gaussian centres,
L2-normalised (the features of ``tools/benchmark.py``). All three stop a restart early
once it has converged (faiss >= 1.14: objective unchanged; torch and scikit-learn:
assignment unchanged), so the iterations each ran are printed with its time and inertia.
The torch line also gives the share of its k-means++ seeding (faiss draws random samples
instead), and the faiss and torch lines the seconds per Lloyd iteration (time less
seeding, over iterations + 1 for the final assignment).

kNN: the exact ``--knn-k`` nearest neighbours (cosine) of ``--knn-n`` such features among
themselves, :func:`cluster_ssl.cluster.knn.knn` with each backend, with the share of
neighbour lists on which the two agree.

Times are the median of ``--repeats`` runs, interleaved. ``--device cuda`` runs the torch
backend on the GPU (the features copied there once, outside the timing; faiss and
scikit-learn stay on the CPU). The command line, the machine and the load average are
printed with the tables.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from tools.machine import cpu_model  # noqa: E402


def clustered_features(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` float32 points around 10 Gaussian centres, L2-normalised (like an embedding)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, dim))
    x = centres[rng.integers(0, 10, size=n)] + rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def machine() -> str:
    """The CPU model, cores, threads and library versions, on one line."""
    cpu = cpu_model()
    import faiss
    import sklearn

    return (
        f"cpu: {cpu}, nproc {os.cpu_count()}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, torch threads "
        f"{torch.get_num_threads()}; torch {torch.__version__}, faiss {faiss.__version__}, "
        f"scikit-learn {sklearn.__version__}, numpy {np.__version__}"
    )


def load() -> str:
    """The 1-, 5- and 15-minute load averages."""
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def timed(run: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Seconds ``run(*args, **kwargs)`` took, and what it returned."""
    started = time.perf_counter()
    result = run(*args, **kwargs)
    return time.perf_counter() - started, result


class Recorder:
    """Records, during one call of our ``kmeans``, the iterations each backend ran and the
    time the torch backend spent seeding."""

    def __init__(self) -> None:
        # the module, not the function of the same name the package exports
        kmeans_module = importlib.import_module("cluster_ssl.cluster.kmeans")
        torch_backend = importlib.import_module("cluster_ssl.cluster.torch_backend")

        self.iterations: list[int] = []
        self.seeding = 0.0
        self._patched: list[tuple[Any, str, Any]] = []
        original_faiss = kmeans_module._faiss_kmeans
        original_lloyd = torch_backend.lloyd
        original_seeds = torch_backend._draw_seeds

        def faiss_kmeans(*args: Any, **kwargs: Any) -> Any:
            km = original_faiss(*args, **kwargs)
            train = km.train

            def recording_train(*targs: Any, **tkwargs: Any) -> Any:
                result = train(*targs, **tkwargs)
                self.iterations.append(len(km.obj))
                return result

            km.train = recording_train
            return km

        def lloyd(*args: Any, **kwargs: Any) -> Any:
            run = original_lloyd(*args, **kwargs)
            self.iterations.append(run.iterations)
            return run

        def draw_seeds(x: torch.Tensor, *args: Any) -> torch.Tensor:
            started = time.perf_counter()
            chosen = original_seeds(x, *args)
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            self.seeding += time.perf_counter() - started
            return chosen

        for module, name, replacement in (
            (kmeans_module, "_faiss_kmeans", faiss_kmeans),
            (torch_backend, "lloyd", lloyd),
            (torch_backend, "_draw_seeds", draw_seeds),
        ):
            self._patched.append((module, name, getattr(module, name)))
            setattr(module, name, replacement)

    def close(self) -> None:
        for module, name, original in self._patched:
            setattr(module, name, original)


def bench_kmeans(args: argparse.Namespace, x: np.ndarray, device: torch.device) -> None:
    from sklearn.cluster import KMeans

    from cluster_ssl.cluster.kmeans import kmeans

    x_torch = torch.from_numpy(x).to(device)
    for k in args.k:
        print(
            f"\n## k-means, {x.shape[0]:,} x {x.shape[1]}, k = {k}, {args.n_init} restart(s) "
            f"of at most {args.iterations} iterations, median of {args.repeats}\n"
        )
        rows: dict[str, list[tuple[float, float, int, float]]] = {}
        for repeat in range(args.repeats):
            seed = args.seed + repeat
            common = {"n_init": args.n_init, "n_iter": args.iterations, "seed": seed}
            recorder = Recorder()
            try:
                seconds, result = timed(kmeans, x, k, backend="faiss", **common)
            finally:
                recorder.close()
            rows.setdefault("faiss", []).append(
                (seconds, result.inertia, max(recorder.iterations), 0.0)
            )
            recorder = Recorder()
            try:
                seconds, result = timed(kmeans, x_torch, k, backend="torch", **common)
            finally:
                recorder.close()
            rows.setdefault(f"torch ({device.type})", []).append(
                (seconds, result.inertia, max(recorder.iterations), recorder.seeding)
            )
            if not args.skip_sklearn:
                reference = KMeans(
                    k,
                    init="k-means++",
                    n_init=args.n_init,
                    max_iter=args.iterations,
                    tol=0.0,
                    algorithm="lloyd",
                    random_state=seed,
                )
                seconds, reference = timed(reference.fit, x)
                rows.setdefault("scikit-learn", []).append(
                    (seconds, float(reference.inertia_), int(reference.n_iter_), 0.0)
                )
            print(
                f"repeat {repeat + 1}: "
                + ", ".join(f"{name} {runs[-1][0]:.2f} s" for name, runs in rows.items()),
                flush=True,
            )
        print()
        print(
            "| method | initial centres | time (s) | inertia | iterations | seeding share "
            "| s / iteration |"
        )
        print("|---|---|---:|---:|---:|---:|---:|")
        init = {"faiss": "random samples"}
        for name, runs in rows.items():
            seconds = statistics.median(run[0] for run in runs)
            inertia = statistics.median(run[1] for run in runs)
            iterations = "/".join(str(run[2]) for run in runs)
            share = statistics.median(run[3] / run[0] for run in runs)
            # assignment passes: one per iteration and the final one (our kmeans' for faiss)
            per_pass = statistics.median((run[0] - run[3]) / (run[2] + 1) for run in runs)
            seeds = init.get(name, "greedy k-means++")
            print(
                f"| {name} | {seeds} | {seconds:.2f} | {inertia:,.1f} | {iterations} | "
                f"{f'{share:.0%}' if share else '-'} | "
                f"{'-' if name == 'scikit-learn' else f'{per_pass:.3f}'} |"
            )
        faiss_s = statistics.median(run[0] for run in rows["faiss"])
        torch_s = statistics.median(run[0] for run in rows[f"torch ({device.type})"])
        print(f"\ntorch / faiss time: {torch_s / faiss_s:.2f}x")


def bench_knn(args: argparse.Namespace, device: torch.device) -> None:
    from cluster_ssl.cluster.knn import knn

    x = clustered_features(args.knn_n, args.dim, seed=args.seed + 1)
    x_torch = torch.from_numpy(x).to(device)
    print(
        f"\n## exact {args.knn_k}-NN (cosine), {x.shape[0]:,} x {x.shape[1]}, "
        f"median of {args.repeats}\n"
    )
    faiss_times, torch_times = [], []
    for repeat in range(args.repeats):
        seconds, (_, expected) = timed(knn, x, args.knn_k, backend="faiss")
        faiss_times.append(seconds)
        seconds, (_, got) = timed(knn, x_torch, args.knn_k, backend="torch")
        torch_times.append(seconds)
        print(
            f"repeat {repeat + 1}: faiss {faiss_times[-1]:.2f} s, torch {torch_times[-1]:.2f} s",
            flush=True,
        )
    same_lists = float(np.mean([set(a) == set(b) for a, b in zip(expected, got, strict=True)]))
    same_ids = float((expected == got).mean())
    faiss_s, torch_s = statistics.median(faiss_times), statistics.median(torch_times)
    print()
    print("| method | time (s) |")
    print("|---|---:|")
    print(f"| faiss (IndexFlatIP) | {faiss_s:.2f} |")
    print(f"| torch ({device.type}) | {torch_s:.2f} |")
    print(
        f"\ntorch / faiss time: {torch_s / faiss_s:.2f}x; identical neighbour sets on "
        f"{same_lists:.2%} of the rows, identical id at each rank {same_ids:.2%} (the rest "
        "are ties broken differently)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="torch vs faiss (vs scikit-learn) k-means and exact kNN timings",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=70_000, help="k-means samples")
    parser.add_argument("--dim", type=int, default=128, help="feature dimension")
    parser.add_argument(
        "--k",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[10, 1000],
        help="numbers of clusters, comma-separated",
    )
    parser.add_argument("--n-init", type=int, default=1, help="k-means restarts")
    parser.add_argument("--iterations", type=int, default=50, help="most Lloyd iterations")
    parser.add_argument("--knn-n", type=int, default=50_000, help="kNN samples")
    parser.add_argument("--knn-k", type=int, default=20, help="neighbours")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="where the torch backend runs")
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument("--skip-knn", action="store_true")
    parser.add_argument("--skip-kmeans", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    arguments = sys.argv[1:] if argv is None else argv
    threads = os.environ.get("OMP_NUM_THREADS")
    prefix = f"OMP_NUM_THREADS={threads} " if threads else ""
    print(f"command: {prefix}python tools/kmeans_backends.py {shlex.join(arguments)}".rstrip())
    print(machine())
    print(f"load average before: {load()}")
    device = torch.device(args.device)
    if not args.skip_kmeans:
        bench_kmeans(args, clustered_features(args.n, args.dim, seed=args.seed), device)
    if not args.skip_knn:
        bench_knn(args, device)
    print(f"\nload average after: {load()}")


if __name__ == "__main__":
    main()

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

``--grid``: our k-means and kNN against scikit-learn's at equal work, over ``--grid-n``
(10,000, 70,000, 500,000 samples) x ``--grid-k`` (10, 100, 1,000 clusters)::

    OMP_NUM_THREADS=1 python tools/kmeans_backends.py --grid [--iterations 50]
        [--repeats 3] [--big-n 500000] [--big-iterations 5] [--big-repeats 3]

Per cell: ``kmeans(backend="auto")`` (what the package runs; the backend it chose is
named), ``backend="faiss"`` where auto chose another, and scikit-learn's ``KMeans`` started
from the same initial centres as faiss (the rows faiss's seed draws,
:func:`cluster_ssl.cluster.sklearn_backend.faiss_initial_rows`, drawn outside its timing),
``algorithm="lloyd"``, ``tol=0``: the same restarts (``--n-init``, each from faiss's
centres for that restart) and at most ``--iterations`` Lloyd iterations for all, so each
does the same iterations from the same start and reaches the same inertia up to float
rounding. The iterations each ran are printed beside time and inertia. Cells with at least
``--big-n`` samples run ``--big-iterations`` iterations and ``--big-repeats`` repeats. Each
repeat runs every backend once, in turn (interleaved), so a load that comes and goes hits
all of them alike; times are medians. The last two columns are scikit-learn's time over
ours (>= 1.00: ours is as fast or faster), the median over the repeats of each repeat's
ratio, and the same for the time per iteration (where the two stopped after different
numbers of iterations: faiss stops once its objective repeats, one iteration after the
assignment does, and may stop before scikit-learn where float rounding keeps moving a
few samples). kNN: the exact ``--knn-k`` nearest neighbours
(cosine) of every row, :func:`cluster_ssl.cluster.knn.knn` against scikit-learn's
``NearestNeighbors(algorithm="brute", metric="cosine")``, at the ``--grid-n`` sizes up to
``--grid-knn-max-n`` (an exact search of 500,000 rows is 25x the work of 70,000's).

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
    """Records, during one call of our ``kmeans``, the iterations each backend ran (the
    most of its restarts) and the time the torch backend spent seeding."""

    def __init__(self) -> None:
        # the module, not the function of the same name the package exports
        kmeans_module = importlib.import_module("cluster_ssl.cluster.kmeans")
        torch_backend = importlib.import_module("cluster_ssl.cluster.torch_backend")
        sklearn_backend = importlib.import_module("cluster_ssl.cluster.sklearn_backend")

        self.iterations: list[int] = []
        self.seeding = 0.0
        self._patched: list[tuple[Any, str, Any]] = []
        original_faiss = kmeans_module._faiss_kmeans
        original_lloyd = torch_backend.lloyd
        original_seeds = torch_backend.kmeans_plus_plus_seeds
        recorder = self

        class RecordingKMeans(sklearn_backend.KMeans):  # type: ignore[misc, name-defined]
            def fit(self, *fargs: Any, **fkwargs: Any) -> Any:
                fitted = super().fit(*fargs, **fkwargs)
                recorder.iterations.append(int(self.n_iter_))
                return fitted

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
            (torch_backend, "kmeans_plus_plus_seeds", draw_seeds),
            (sklearn_backend, "KMeans", RecordingKMeans),
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


def sklearn_from_faiss_start(
    x: np.ndarray, k: int, n_init: int, n_iter: int, seed: int
) -> tuple[float, float, int]:
    """scikit-learn's Lloyd k-means from faiss's initial centres: (seconds, inertia,
    iterations).

    Restart r starts from the rows faiss's restart r starts from (drawn before the clock
    starts); the lowest inertia is kept; iterations are the most any restart ran.
    """
    from sklearn.cluster import KMeans

    from cluster_ssl.cluster.sklearn_backend import faiss_initial_rows

    starts = [x[faiss_initial_rows(len(x), k, seed, r)] for r in range(n_init)]
    started = time.perf_counter()
    fits = [
        KMeans(k, init=start, n_init=1, max_iter=n_iter, tol=0.0, algorithm="lloyd").fit(x)
        for start in starts
    ]
    seconds = time.perf_counter() - started
    inertia = min(float(fit.inertia_) for fit in fits)
    return seconds, inertia, max(int(fit.n_iter_) for fit in fits)


def ours(x: np.ndarray, k: int, backend: str, **common: int) -> tuple[float, float, int]:
    """Our ``kmeans`` with ``backend``: (seconds, inertia, iterations)."""
    from cluster_ssl.cluster.kmeans import kmeans

    recorder = Recorder()
    try:
        seconds, result = timed(kmeans, x, k, backend=backend, **common)
    finally:
        recorder.close()
    return seconds, result.inertia, max(recorder.iterations, default=0)


def grid_kmeans_run(
    name: str, x: np.ndarray, k: int, n_init: int, n_iter: int, seed: int
) -> tuple[float, float, int]:
    """One grid k-means run of ``name`` (``"scikit-learn"``, ``"faiss"`` or ours, auto)."""
    if name == "scikit-learn":
        return sklearn_from_faiss_start(x, k, n_init, n_iter, seed)
    backend = "faiss" if name == "faiss" else "auto"
    return ours(x, k, backend, n_init=n_init, n_iter=n_iter, seed=seed)


def grid_knn_run(name: str, x: np.ndarray, k: int) -> np.ndarray:
    """One grid kNN run of ``name`` (``"scikit-learn"`` or ours, auto): (N, k) indices."""
    from sklearn.neighbors import NearestNeighbors

    from cluster_ssl.cluster.knn import knn

    if name != "scikit-learn":
        return knn(x, k)[1]
    reference = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="cosine")
    # kneighbors() without queries leaves each sample out of its own list, as ours
    return reference.fit(x).kneighbors(return_distance=False)


def bench_grid_kmeans(args: argparse.Namespace) -> None:
    from cluster_ssl.cluster.backend import resolve_backend

    summary = []
    for n in args.grid_n:
        x = clustered_features(n, args.dim, seed=args.seed)
        big = n >= args.big_n
        n_iter = args.big_iterations if big else args.iterations
        repeats = args.big_repeats if big else args.repeats
        for k in args.grid_k:
            chosen = resolve_backend("auto", x, clusters=k)
            print(
                f"\n## k-means, {n:,} x {args.dim}, k = {k}: {args.n_init} restart(s) of at "
                f"most {n_iter} iterations, median of {repeats} (auto chose {chosen})\n",
                flush=True,
            )
            names = [f"ours ({chosen})", *(["faiss"] if chosen != "faiss" else [])]
            names.append("scikit-learn")
            rows: dict[str, list[tuple[float, float, int]]] = {name: [] for name in names}
            for repeat in range(repeats):
                # each repeat in another order, so no backend always runs first
                turn = repeat % len(names)
                for name in names[turn:] + names[:turn]:
                    rows[name].append(
                        grid_kmeans_run(name, x, k, args.n_init, n_iter, args.seed + repeat)
                    )
                print(
                    f"repeat {repeat + 1}: "
                    + ", ".join(f"{name} {rows[name][-1][0]:.3f} s" for name in names),
                    flush=True,
                )
            print("\n| method | time (s) | inertia | iterations |")
            print("|---|---:|---:|---:|")
            medians = {}
            for name in names:
                runs = rows[name]
                medians[name] = (
                    statistics.median(run[0] for run in runs),
                    statistics.median(run[1] for run in runs),
                )
                print(
                    f"| {name} | {medians[name][0]:.3f} | {medians[name][1]:,.1f} | "
                    f"{'/'.join(str(run[2]) for run in runs)} |"
                )
            ours_s, ours_inertia = medians[names[0]]
            faiss_s = f"{medians['faiss'][0]:.3f}" if "faiss" in medians else "(ours)"
            sk_s, sk_inertia = medians["scikit-learn"]
            # each repeat's backends ran back to back: their ratio cancels a load that
            # changes between repeats
            pairs = list(zip(rows[names[0]], rows["scikit-learn"], strict=True))
            ratio = statistics.median(sk[0] / mine[0] for mine, sk in pairs)
            per_iteration = statistics.median(
                (sk[0] / max(sk[2], 1)) / (mine[0] / max(mine[2], 1)) for mine, sk in pairs
            )
            summary.append(
                f"| {n:,} | {k:,} | {n_iter} x {repeats} | {chosen} | {ours_s:.3f} | "
                f"{faiss_s} | {sk_s:.3f} | {ours_inertia:,.1f} | {sk_inertia:,.1f} | "
                f"{ratio:.2f}x | {per_iteration:.2f}x |"
            )
    print(
        f"\n## k-means grid: {args.n_init} restart(s), at most the iterations shown, "
        "median time of the repeats\n"
    )
    print(
        "| n | k | iterations x repeats | ours (backend) | ours (s) | faiss (s) | "
        "scikit-learn (s) | inertia ours | inertia scikit-learn | scikit-learn time / ours "
        "| per iteration |"
    )
    print("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(summary))


def bench_grid_knn(args: argparse.Namespace) -> None:
    from cluster_ssl.cluster.backend import resolve_backend

    summary = []
    for n in args.grid_n:
        if n > args.grid_knn_max_n:
            print(f"\nkNN at n = {n:,} skipped (above --grid-knn-max-n {args.grid_knn_max_n:,})")
            continue
        x = clustered_features(n, args.dim, seed=args.seed + 1)
        chosen = resolve_backend("auto", x)
        print(
            f"\n## exact {args.knn_k}-NN (cosine), {n:,} x {args.dim}, median of "
            f"{args.grid_knn_repeats}\n",
            flush=True,
        )
        names = [f"ours ({chosen})", "scikit-learn"]
        times: dict[str, list[float]] = {name: [] for name in names}
        found: dict[str, np.ndarray] = {}
        for repeat in range(args.grid_knn_repeats):
            turn = repeat % len(names)
            for name in names[turn:] + names[:turn]:
                seconds, found[name] = timed(grid_knn_run, name, x, args.knn_k)
                times[name].append(seconds)
            print(
                f"repeat {repeat + 1}: "
                + ", ".join(f"{name} {times[name][-1]:.2f} s" for name in names),
                flush=True,
            )
        ours_s = statistics.median(times[names[0]])
        sk_s = statistics.median(times["scikit-learn"])
        same = float(
            np.mean(
                [
                    set(a) == set(b)
                    for a, b in zip(found[names[0]], found["scikit-learn"], strict=True)
                ]
            )
        )
        summary.append(
            f"| {n:,} | {chosen} | {ours_s:.2f} | {sk_s:.2f} | {same:.2%} | {sk_s / ours_s:.2f}x |"
        )
    print(f"\n## exact {args.knn_k}-NN grid\n")
    print(
        "| n | ours (backend) | ours (s) | scikit-learn (s) | same neighbour sets | "
        "scikit-learn time / ours |"
    )
    print("|---:|---|---:|---:|---:|---:|")
    print("\n".join(summary))


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
    sizes = lambda text: [int(part) for part in text.split(",")]  # noqa: E731
    parser.add_argument("--grid", action="store_true", help="ours against scikit-learn")
    parser.add_argument("--grid-n", type=sizes, default=[10_000, 70_000, 500_000])
    parser.add_argument("--grid-k", type=sizes, default=[10, 100, 1000])
    parser.add_argument("--big-n", type=int, default=500_000, help="grid cells this large...")
    parser.add_argument("--big-iterations", type=int, default=5, help="... run this many")
    parser.add_argument("--big-repeats", type=int, default=3, help="... this many times")
    parser.add_argument("--grid-knn-max-n", type=int, default=70_000, help="largest kNN n")
    parser.add_argument("--grid-knn-repeats", type=int, default=3)
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
    if args.grid:
        if not args.skip_kmeans:
            bench_grid_kmeans(args)
        if not args.skip_knn:
            bench_grid_knn(args)
        print(f"\nload average after: {load()}")
        return
    if not args.skip_kmeans:
        bench_kmeans(args, clustered_features(args.n, args.dim, seed=args.seed), device)
    if not args.skip_knn:
        bench_knn(args, device)
    print(f"\nload average after: {load()}")


if __name__ == "__main__":
    main()

"""Performance measurements for cluster-ssl, one subcommand per measurement.

    python tools/benchmark.py augment [--batch 256] [--steps 20] [--size 32] [--repeats 5]

``augment``: images/s of the device-side ``simclr`` pipeline (two views, batched, on a uint8
batch already on the device; once per ``--threads`` setting of torch's intra-op threads)
against torchvision's per-image v2 transforms in a DataLoader (two views per image,
``--workers`` processes), and kornia.augmentation's stock ops on the same device for
reference (at the first ``--threads`` setting); all in one run, interleaved, ``--repeats``
times, reporting the median. Record results in docs/BENCHMARKS.md with the command and the
machine.

    python tools/benchmark.py mining [--n 70000] [--dim 128] [--k 20] [--repeats 3]
                                     [--features FILE.npy]

``mining``: SCAN's neighbour mining (:func:`cluster_ssl.cluster.neighbours.mine_neighbours`,
exact faiss search in chunks) against scikit-learn's brute-force ``NearestNeighbors``
(cosine) on the same L2-normalised features (``--n`` points around 10 Gaussian centres in
``--dim`` dimensions, or the (N, d) array in ``--features``), in one run, with the agreement
of the neighbour lists.

    python tools/benchmark.py folder-memory [--n 20000] [--side 32] [--batch 256]

``folder-memory``: peak resident memory while a folder of ``--n`` small PNGs goes through
one training epoch of the streaming path (``StreamingBatches``, decoding in this process) and
one whole-dataset pass (``embed``), against what holding every decoded image would take.

    python tools/benchmark.py METHOD [--dataset digits] [--batch 256] [--steps 20 | --epochs 1]
                                     [--stage NAME] [--device ...] [--precision ...] [--set K=V]

``METHOD`` (any recipe: simclr, cc, idfd, scan, pcl, deepcluster, dec, idec, dcec): one
stage of the recipe, built and trained as ``cluster-ssl train`` does, with the time per step
split into data, augmentation, forward + backward, optimiser and refreshes, images/s, peak
memory, and the bare backbone's forward + backward on the same inputs with the ratio of the
two (see tools/step_profile.py). ``--epochs`` measures whole epochs and so the share of
the per-epoch refreshes (k-means, P, E-step) in an epoch.

    python tools/benchmark.py simclr|cc|scan --reference lightly [--steps 10] [--rounds 5]
                                             [--peer-workers 2] [--dataset ...] [--set K=V]

``--reference lightly``: rounds of our step (SCAN: its SimCLR pretext), alternating with
rounds of lightly's way of training a copy of the same network on the same images
(``SimCLRTransform`` at our augmentation's strengths in ``--peer-workers`` DataLoader
workers, one forward pass per view, ``NTXentLoss``, our optimiser; see
tools/lightly_peer.py), ending in ``ratio ours/lightly: X.XX (images/s, median of N
rounds)``. Without ``--dataset``: the recipe's CPU preset (its Fashion-MNIST settings:
quarter-width ResNet-18, batch 256, Adam) on 32 px RGB synthetic images. lightly is an
optional extra: ``pip install -e '.[bench]'``.

    python tools/benchmark.py METHOD --contention [--steps 10] [--rounds 5] [--load-threads 2]

``--contention``: rounds of a step alone, alternating with rounds beside a competing job
(another process's torch matrix products on ``--load-threads`` threads, torch's defaults;
tools/contention.py), ending in ``slowdown beside a 2-thread job: X.XXx``. To time
libgomp's default spinning instead of cluster-ssl's wait policy, run it with
``GOMP_SPINCOUNT=300000`` (cluster_ssl/runtime/threads.py).

    python tools/benchmark.py pass-batch [--widths 0.25,1.0] [--side 28] [--batches 16,...,1024]
                                         [--timm vit_tiny_patch16_224 --timm-images 512]

``pass-batch``: milliseconds per image of a whole-dataset pass without gradients (eval mode,
``no_grad``, as ``embed`` runs it) at each batch size, for a ResNet-18 at each ``--widths``,
DCEC's convolutional encoder and DEC's d-500-500-2000-10 one, on random ``--side`` px
single-channel inputs, and for each ``--timm`` model on ``--timm-images`` random RGB images
of its default input size (a batch larger than that is shown as ``-``); the measurement
behind :func:`cluster_ssl.runtime.device.dataset_pass_batch_size`.

    python tools/benchmark.py kmeans [--n 70000] [--dim 128] [--k 10] [--n-init 3]
                                     [--iterations 50] [--features FILE.npy]

``kmeans``: :func:`cluster_ssl.cluster.kmeans.kmeans` (faiss) against scikit-learn's
``KMeans`` (Lloyd, random initial centres, ``tol=0`` so both run every iteration), on the
same features, with the objective each reaches.

    python tools/benchmark.py bank-loss [--batch 256] [--n 70000] [--dim 128] [--temperature 0.1]
                                        [--block LOGITS]

``bank-loss``: one step of IDFD's instance discrimination (the loss over the whole memory
bank, its backward and the bank update) on random features, median of ``--repeats``, with
the loss's blocks of ``--block`` logits if given. A copy of this file run inside another
checkout times that version's code (the path it imports is printed).

    python tools/benchmark.py estimator [IDEC] [--seeds 0,1,2] [--reference clustpy]

``estimator``: ``Est(n_clusters=10, random_state=S).fit_predict(load_digits().data / 16)``
for each seed, the cluster-ssl estimator with its defaults, wall time and ACC / NMI; with
``--reference clustpy`` the estimator of the same name from ClustPy (``clustpy.deep``,
installed separately) with its defaults, on the same data and seeds, interleaved.

To add a measurement: write ``bench_<name>(args) -> None`` and register its arguments in
``build_parser`` with ``set_defaults(func=bench_<name>)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# before torch: importing cluster_ssl sets how OpenMP threads wait, which torch's OpenMP
# reads once, as it loads (cluster_ssl/runtime/threads.py)
import cluster_ssl  # noqa: E402

# isort: split
import argparse  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cluster_ssl.augment import TwoViews, build_pipeline, dataset_stats  # noqa: E402
from cluster_ssl.cli import add_set_option, add_speed_options  # noqa: E402
from cluster_ssl.runtime.allocator import process_allocator  # noqa: E402
from cluster_ssl.runtime.choices import DEVICE_CHOICES, PRECISION_CHOICES  # noqa: E402
from cluster_ssl.runtime.device import resolve_device  # noqa: E402
from cluster_ssl.runtime.errors import UserError  # noqa: E402
from cluster_ssl.runtime.threads import process_wait_policy  # noqa: E402
from tools.lightly_peer import INSTALL_HINT  # noqa: E402
from tools.machine import cpu_model  # noqa: E402


def machine_summary() -> str:
    """One line naming the CPU, core count, and library versions."""
    import kornia
    import torchvision

    cpu = cpu_model()
    return (
        f"cpu: {cpu}, nproc {os.cpu_count()}, torch threads {torch.get_num_threads()}; "
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, kornia {kornia.__version__}; "
        f"{process_wait_policy().describe()}; {process_allocator().describe()}"
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(run: Callable[[], int], device: torch.device) -> float:
    """Images per second of one call of ``run`` (which returns how many images it did)."""
    _sync(device)
    start = time.perf_counter()
    images = run()
    _sync(device)
    return images / (time.perf_counter() - start)


class _TorchvisionViews(torch.utils.data.Dataset):
    """``length`` items cycling over ``images``; each item is two augmented views."""

    def __init__(self, images: torch.Tensor, length: int, transform: Callable) -> None:
        self.images = images
        self.length = length
        self.transform = transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index % len(self.images)]
        return self.transform(image), self.transform(image)


def _torchvision_simclr(size: int, mean: tuple, std: tuple) -> Callable:
    """SimCLR's weak augmentation as torchvision v2 per-image tensor transforms."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def _kornia_simclr(size: int, mean: tuple, std: tuple) -> torch.nn.Module:
    """The same augmentation from kornia.augmentation's stock ops (float input)."""
    import kornia.augmentation as K

    return torch.nn.Sequential(
        K.RandomResizedCrop((size, size), scale=(0.2, 1.0)),
        K.RandomHorizontalFlip(),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
        K.RandomGrayscale(p=0.2),
        K.Normalize(torch.tensor(mean), torch.tensor(std)),
    )


def _print_table(rows: list[tuple[str, list[float]]], batch: int) -> None:
    print(f"| pipeline | images/s (median) | min | max | ms per batch of {batch} (2 views) |")
    print("|---|---:|---:|---:|---:|")
    for name, rates in rows:
        median = statistics.median(rates)
        print(
            f"| {name} | {median:,.0f} | {min(rates):,.0f} | {max(rates):,.0f} "
            f"| {1000 * batch / median:.1f} |"
        )


def bench_augment(args: argparse.Namespace) -> None:
    """SimCLR two-view augmentation: device pipeline vs torchvision DataLoader vs kornia."""
    default_threads = torch.get_num_threads()
    if args.threads:
        threads = sorted({int(t) for t in args.threads.split(",")})
    else:
        threads = sorted({1, default_threads})
    device = resolve_device(args.device)
    mean, std = dataset_stats("cifar10")
    torch.manual_seed(0)
    images = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    on_device = images.to(device)

    ours = TwoViews(build_pipeline("simclr", image_size=args.size, mean=mean, std=std))
    stock = TwoViews(_kornia_simclr(args.size, mean, std)).to(device)
    dataset = _TorchvisionViews(
        images, args.batch * args.steps, _torchvision_simclr(args.size, mean, std)
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )

    def with_threads(num_threads: int, run: Callable[[], int]) -> Callable[[], int]:
        def wrapped() -> int:
            torch.set_num_threads(num_threads)
            try:
                return run()
            finally:
                torch.set_num_threads(default_threads)

        return wrapped

    def run_ours() -> int:
        for _ in range(args.steps):
            ours(on_device)
        return args.batch * args.steps

    def run_stock() -> int:
        for _ in range(args.kornia_steps):
            stock(on_device.float().div(255))
        return args.batch * args.kornia_steps

    def run_torchvision() -> int:
        count = 0
        for first, second in loader:
            first.to(device)
            second.to(device)
            count += first.shape[0]
        return count

    def threads_label(n: int) -> str:
        return f"{n} thread{'s' * (n > 1)}"

    candidates = [
        (f"cluster-ssl `simclr`, device, {threads_label(n)}", with_threads(n, run_ours))
        for n in threads
    ]
    if args.kornia_steps:
        label = f"kornia.augmentation stock ops, device, {threads_label(threads[0])}"
        candidates.append((label, with_threads(threads[0], run_stock)))
    candidates.append(
        (f"torchvision v2 per image, DataLoader num_workers={args.workers}", run_torchvision)
    )
    print(machine_summary())
    print(f"device {device}, batch {args.batch}, {args.size}x{args.size} RGB uint8")
    for _, run in candidates:  # warm-up: allocator, worker start-up, first-call overheads
        run()
    rates: dict[str, list[float]] = {name: [] for name, _ in candidates}
    for repeat in range(args.repeats):
        for name, run in candidates:
            rates[name].append(_rate(run, device))
        print(
            f"repeat {repeat + 1}/{args.repeats}: "
            + ", ".join(f"{rates[name][-1]:,.0f}" for name, _ in candidates),
            flush=True,
        )
    rows = [(name, rates[name]) for name, _ in candidates]
    _print_table(rows, args.batch)
    baseline = statistics.median(rows[-1][1])
    for name, values in rows[:-1]:
        print(f"speedup of {name} over torchvision: {statistics.median(values) / baseline:.1f}x")


def _clustered_features(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` float32 points around 10 Gaussian centres, L2-normalised (like an embedding)."""

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, dim))
    x = centres[rng.integers(0, 10, size=n)] + rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def bench_mining(args: argparse.Namespace) -> None:
    """Top-k neighbour mining: faiss (ours) against scikit-learn brute force."""
    from sklearn.neighbors import NearestNeighbors

    from cluster_ssl.cluster.neighbours import mine_neighbours

    print(machine_summary())
    if args.features:
        x = np.load(args.features).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    else:
        x = _clustered_features(args.n, args.dim)
    print(f"{x.shape[0]:,} x {x.shape[1]} float32 features, k = {args.k}")
    faiss_times, exact_times = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        ours = mine_neighbours(x, args.k).numpy()
        faiss_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        exact = mine_neighbours(x, args.k, exact=True).numpy()
        exact_times.append(time.perf_counter() - started)
    started = time.perf_counter()
    search = NearestNeighbors(n_neighbors=args.k + 1, algorithm="brute", metric="cosine")
    theirs = search.fit(x).kneighbors(x, return_distance=False)
    sklearn_seconds = time.perf_counter() - started
    theirs = np.array([[j for j in row if j != i][: args.k] for i, row in enumerate(theirs)])

    def overlap(found: np.ndarray) -> float:
        pairs = zip(found, theirs, strict=True)
        return float(np.mean([len(set(a) & set(b)) / args.k for a, b in pairs]))

    for name, times, found in (
        ("mine_neighbours (default)", faiss_times, ours),
        ("mine_neighbours (exact=True)", exact_times, exact),
    ):
        median = statistics.median(times)
        print(
            f"faiss {name}: {median:.2f} s median of {args.repeats} "
            f"(min {min(times):.2f}, max {max(times):.2f}); "
            f"{sklearn_seconds / median:.1f}x scikit-learn; lists agree on {overlap(found):.4f}"
        )
    print(f"scikit-learn NearestNeighbors brute cosine: {sklearn_seconds:.2f} s")


def bench_kmeans(args: argparse.Namespace) -> None:
    """k-means: faiss (ours) against scikit-learn's, the same iterations and restarts."""
    from sklearn.cluster import KMeans

    from cluster_ssl.cluster.kmeans import kmeans

    print(machine_summary())
    if args.features:
        x = np.load(args.features).astype(np.float32)
    else:
        x = _clustered_features(args.n, args.dim)
    print(
        f"{x.shape[0]:,} x {x.shape[1]} float32 features, k = {args.k}, {args.n_init} "
        f"restart(s) of {args.iterations} Lloyd iterations each (no early stop in either), "
        "random initial centres in both"
    )
    ours, theirs = [], []
    for repeat in range(args.repeats):
        started = time.perf_counter()
        result = kmeans(x, args.k, n_init=args.n_init, n_iter=args.iterations, seed=repeat)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        reference = KMeans(
            args.k,
            init="random",
            n_init=args.n_init,
            max_iter=args.iterations,
            tol=0.0,
            algorithm="lloyd",
            random_state=repeat,
        ).fit(x)
        theirs.append(time.perf_counter() - started)
        print(
            f"repeat {repeat + 1}: faiss {ours[-1]:.2f} s (inertia {result.inertia:,.1f}), "
            f"scikit-learn {theirs[-1]:.2f} s (inertia {reference.inertia_:,.1f})",
            flush=True,
        )
    faiss_s, sklearn_s = statistics.median(ours), statistics.median(theirs)
    print(f"median: faiss {faiss_s:.2f} s, scikit-learn {sklearn_s:.2f} s")
    print(f"speedup of faiss over scikit-learn: {sklearn_s / faiss_s:.1f}x")


def bench_bank_loss(args: argparse.Namespace) -> None:
    """IDFD's instance discrimination loss, its backward and the bank update, one step."""
    import torch.nn.functional as F

    from cluster_ssl.losses import idfd
    from cluster_ssl.losses.idfd import instance_discrimination_loss
    from cluster_ssl.models.memory_bank import MemoryBank

    print(machine_summary())
    print(f"cluster_ssl from {Path(cluster_ssl.__file__).parent}")
    if args.block is not None:
        idfd.logits_per_block = lambda device: args.block
    generator = torch.Generator().manual_seed(0)
    bank = MemoryBank(args.n, args.dim)
    features = torch.randn(args.batch, args.dim, generator=generator)
    index = torch.randperm(args.n, generator=generator)[: args.batch]

    def step() -> float:
        started = time.perf_counter()
        leaf = features.clone().requires_grad_()
        loss = instance_discrimination_loss(leaf, index, bank.memory, args.temperature)
        bank.update(index, F.normalize(leaf.detach(), dim=1))
        loss.backward()
        return time.perf_counter() - started

    step()
    times = [step() for _ in range(args.repeats)]
    print(
        f"batch {args.batch} against a bank of {args.n:,} x {args.dim}, tau {args.temperature}"
        + (f", blocks of {args.block:,} logits" if args.block is not None else "")
        + ": "
        f"loss + backward + bank update {statistics.median(times) * 1000:.1f} ms "
        f"(median of {args.repeats}; min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})"
    )


def bench_estimator(args: argparse.Namespace) -> None:
    """A scikit-learn estimator on digits with its defaults, against a reference package's."""
    import importlib

    from sklearn.datasets import load_digits

    from cluster_ssl.estimators import NAMES
    from cluster_ssl.eval.metrics import evaluate_clustering

    try:
        seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        raise UserError(f"--seeds {args.seeds!r}: give comma-separated ints, e.g. 0,1,2") from None
    if args.name not in NAMES:
        raise UserError(f"no estimator {args.name!r}; use one of {', '.join(sorted(NAMES))}")
    contenders = [("cluster-ssl", getattr(cluster_ssl, args.name))]
    if args.reference:
        try:
            module = importlib.import_module(f"{args.reference}.deep")
        except ImportError:
            raise UserError(
                f"--reference {args.reference}: the package is not installed; "
                f"pip install {args.reference} (into a separate environment if you prefer)"
            ) from None
        if not hasattr(module, args.name):
            raise UserError(f"--reference {args.reference} has no {args.name}; pick another")
        contenders.append((args.reference, getattr(module, args.name)))
    print(machine_summary())
    x, y = load_digits(return_X_y=True)
    x = x / 16
    print(f"{args.name}(n_clusters=10, random_state=S).fit_predict(digits / 16), {len(x):,} x 64")
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in contenders}
    for seed in seeds:
        for name, estimator in contenders:
            started = time.perf_counter()
            labels = estimator(n_clusters=10, random_state=seed).fit_predict(x)
            seconds = time.perf_counter() - started
            scores = evaluate_clustering(y, np.asarray(labels), 10)
            results[name].append((scores["acc"], scores["nmi"], seconds))
            print(
                f"{name} seed {seed}: ACC {scores['acc']:.4f}  NMI {scores['nmi']:.4f}  "
                f"{seconds:.1f} s",
                flush=True,
            )
    for name, rows in results.items():
        acc, nmi, seconds = (statistics.mean(column) for column in zip(*rows, strict=True))
        print(f"{name} mean: ACC {acc:.4f}  NMI {nmi:.4f}  {seconds:.1f} s")


def _memory_kib(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process from /proc, in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def bench_folder_memory(args: argparse.Namespace) -> None:
    """Peak memory of the streaming path on a folder of small images."""
    import tempfile

    from PIL import Image

    from cluster_ssl.data.loaders import StreamingBatches
    from cluster_ssl.data.registry import build_dataset
    from cluster_ssl.methods.embed import embed
    from cluster_ssl.runtime.distributed import DistInfo

    print(machine_summary())
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.n):
            pixels = rng.integers(0, 256, size=(args.side, args.side, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(Path(folder) / f"{i:06d}.png")
        dataset = build_dataset("folder", root=folder, image_size=args.side)
        cpu = torch.device("cpu")
        batches = StreamingBatches(
            dataset,
            args.batch,
            cpu,
            num_workers=0,
            shuffle=True,
            drop_last=True,
            seed=0,
            dist=DistInfo(),
        )
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
        before = _memory_kib("VmRSS")
        started = time.perf_counter()
        seen = sum(len(batch["index"]) for batch in batches)
        pooled = embed(
            lambda b: b["image"].float().mean((2, 3)), dataset, cpu, batch_size=512, num_workers=0
        )
        seconds = time.perf_counter() - started
        peak = _memory_kib("VmHWM")
    all_decoded = args.n * 3 * args.side * args.side / 1024
    one_batch = args.batch * 3 * args.side * args.side / 1024
    print(
        f"{args.n:,} PNGs of {args.side}x{args.side}: one epoch ({seen:,} images) and one "
        f"embedding pass ({len(pooled):,} rows) in {seconds:.1f} s"
    )
    print(
        f"resident before: {before / 1024:.1f} MiB; peak during: {peak / 1024:.1f} MiB; "
        f"growth: {(peak - before) / 1024:.2f} MiB"
    )
    print(
        f"every decoded image held: {all_decoded / 1024:.1f} MiB; one batch of "
        f"{args.batch}: {one_batch / 1024:.2f} MiB"
    )


#: the settings of a CPU preset that fit its data, left out on other images
DATA_SETTINGS = ("image_size", "epochs", "eval_every")
#: the stage ``--reference`` compares where it is not the recipe's own method
PEER_STAGES = {"scan": "pretext"}


def cpu_preset_settings(recipe: str, side: int, preset: str = "fashion-mnist") -> dict[str, Any]:
    """A recipe's CPU preset (its ``preset`` settings: quarter-width ResNet-18, batch 256,
    Adam) on images of ``side`` pixels: without its :data:`DATA_SETTINGS`."""
    from recipes import RECIPES

    settings = RECIPES.get(recipe).preset(preset)
    kept = {key: value for key, value in settings.items() if key not in DATA_SETTINGS}
    return {**kept, "image_size": side}


def _recipe_step(
    args: argparse.Namespace, dataset: str, overrides: dict[str, Any], stage: str | None
) -> Any:
    from tools.recipe_step import RecipeStep

    return RecipeStep(
        args.command,
        dataset,
        overrides=overrides,
        stage_name=stage,
        batch_size=args.batch,
        data_root=args.data_root,
        device_spec=args.device,
        precision_spec=args.precision,
        num_workers=args.workers,
        channels_last=args.channels_last,
        compile_backend=args.compile,
        speed=args.speed,
    )


def _rounds_header(args: argparse.Namespace, step: Any) -> None:
    print(machine_summary())
    print("command: python tools/benchmark.py " + " ".join(sys.argv[1:]))
    print(
        f"stage {step.stage.name!r} of {args.command}, batch {step.batch_size}, "
        f"{args.steps} steps a round after {args.warmup} warm-up steps, device {step.device}, "
        f"{args.rounds} round(s) in alternating order"
    )
    print(f"ours: {step.speed_line}")


def bench_peer(args: argparse.Namespace) -> None:
    """Our step against lightly's way of training the same network on the same images."""
    from cluster_ssl.config import parse_assignments
    from tools.lightly_peer import LightlyStep, import_lightly

    import_lightly()  # before anything is built: a missing package is one line at once
    overrides = parse_assignments(args.assignments)
    dataset = args.dataset
    if dataset is None:  # the CPU preset on 32 px RGB images
        dataset, overrides = "synthetic", {**cpu_preset_settings(args.command, 32), **overrides}
    stage = args.stage or PEER_STAGES.get(args.command)
    with _recipe_step(args, dataset, overrides, stage) as ours:
        peer = LightlyStep(
            ours.stage.method,
            ours.prepared.dataset,
            batch_size=ours.batch_size,
            steps=args.steps,
            workers=args.peer_workers,
            device=ours.device,
        )
        _rounds_header(args, ours)
        cfg, method = ours.prepared.config, ours.stage.method
        print(
            f"network {cfg.backbone} width {cfg.width:g}, {cfg.optimizer} lr {cfg.lr:g}; our "
            f"views in one batch: {method.views_in_one_batch}"
        )
        print(
            f"{dataset}: {len(ours.prepared.dataset):,} images {ours.prepared.dataset.image_shape}"
            f"; lightly: SimCLRTransform in {args.peer_workers} DataLoader workers, one forward "
            "pass per view, NTXentLoss, the same network and optimiser"
        )
        ours.run(args.warmup)
        peer.run()
        rates = alternating_rounds(
            args.rounds,
            {
                "ours": lambda: ours.batch_size / ours.run(args.steps),
                "lightly": lambda: ours.batch_size / peer.run(),
            },
            lambda r: f"ours {r['ours']:,.1f} images/s, lightly {r['lightly']:,.1f} images/s",
        )
    ratios = [a / b for a, b in zip(rates["ours"], rates["lightly"], strict=True)]
    print(
        f"median: ours {statistics.median(rates['ours']):,.1f} images/s, lightly "
        f"{statistics.median(rates['lightly']):,.1f} images/s"
    )
    print(
        f"ratio ours/lightly: {statistics.median(ratios):.2f} (images/s, median of "
        f"{args.rounds} rounds)"
    )


def alternating_rounds(
    rounds: int, runs: dict[str, Callable[[], float]], describe: Callable[[dict[str, float]], str]
) -> dict[str, list[float]]:
    """Each of ``runs`` once a round, their order reversed every other round so that a
    machine's drift hits all alike; prints each round's figures (``describe``)."""
    figures: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for index in range(rounds):
        for name in order[:: 1 if index % 2 == 0 else -1]:
            figures[name].append(runs[name]())
        latest = {name: values[-1] for name, values in figures.items()}
        print(f"round {index + 1}/{rounds}: {describe(latest)}", flush=True)
    return figures


def bench_contention(args: argparse.Namespace) -> None:
    """A step of the recipe alone and beside a competing job, in alternating rounds."""
    from cluster_ssl.config import parse_assignments
    from tools.contention import competing_load

    dataset = args.dataset or "digits"
    with _recipe_step(args, dataset, parse_assignments(args.assignments), args.stage) as step:
        _rounds_header(args, step)
        print(
            f"{dataset}; the competing job: torch matrix products on {args.load_threads} "
            "threads in another process, with torch's defaults"
        )
        step.run(args.warmup)

        def loaded() -> float:
            with competing_load(args.load_threads):
                return step.run(args.steps)

        seconds = alternating_rounds(
            args.rounds,
            {"alone": lambda: step.run(args.steps), "loaded": loaded},
            lambda r: (
                f"alone {r['alone'] * 1e3:,.1f} ms a step, beside the job "
                f"{r['loaded'] * 1e3:,.1f} ms"
            ),
        )
    slowdowns = [b / a for a, b in zip(seconds["alone"], seconds["loaded"], strict=True)]
    print(
        f"median: alone {statistics.median(seconds['alone']) * 1e3:,.1f} ms a step, beside "
        f"the job {statistics.median(seconds['loaded']) * 1e3:,.1f} ms"
    )
    print(
        f"slowdown beside a {args.load_threads}-thread job: {statistics.median(slowdowns):.2f}x "
        f"(step time, median of {args.rounds} rounds)"
    )


def _bench_rounds(args: argparse.Namespace) -> None:
    """``--reference`` or ``--contention``, after checking the options they take."""
    if args.reference and args.contention:
        raise UserError("--reference and --contention are separate measurements; pick one")
    profile_only = {"--epochs": args.epochs, "--accumulate": args.accumulate}
    given = [flag for flag, value in profile_only.items() if value is not None]
    if given:
        raise UserError(f"{', '.join(given)}: not with --reference or --contention")
    for flag, value in (("--rounds", args.rounds), ("--steps", args.steps)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    (bench_peer if args.reference else bench_contention)(args)


def bench_method(args: argparse.Namespace) -> None:
    """Time one stage of a recipe, section by section, against its bare backbone."""
    from cluster_ssl.config import parse_assignments
    from tools.step_profile import profile_stage, report

    if args.reference or args.contention:
        return _bench_rounds(args)
    if args.speed == "auto":
        raise UserError("--speed auto: only with --reference or --contention")
    if args.accumulate is not None and args.accumulate < 1:
        raise SystemExit(f"--accumulate must be at least 1, got {args.accumulate}")
    if args.checkpoint_every < 1:
        raise SystemExit(f"--checkpoint-every must be at least 1, got {args.checkpoint_every}")
    if args.pass_batch is not None and args.pass_batch < 1:
        raise SystemExit(f"--pass-batch must be at least 1, got {args.pass_batch}")
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if main_rank:
        print(machine_summary())
        print("command: python tools/benchmark.py " + " ".join(sys.argv[1:]))
    profile = profile_stage(
        args.command,
        args.dataset or "digits",
        data_root=args.data_root,
        overrides=parse_assignments(args.assignments),
        stage_name=args.stage,
        batch_size=args.batch,
        steps=args.steps,
        warmup=args.warmup,
        epochs=args.epochs,
        device_spec=args.device,
        precision_spec=args.precision,
        num_workers=args.workers,
        accumulate=args.accumulate or 1,
        channels_last=args.channels_last,
        compile_backend=args.compile,
        checkpoint_every=args.checkpoint_every,
        pass_batch_size=args.pass_batch,
    )
    if main_rank:
        print(report(profile, str(resolve_device(args.device))))


def _batched_pass(network: torch.nn.Module, inputs: torch.Tensor, batch: int) -> int:
    for start in range(0, len(inputs), batch):
        network(inputs[start : start + batch])
    return len(inputs)


def bench_pass_batch(args: argparse.Namespace) -> None:
    """Per-image cost of a no-gradient pass over the dataset at each batch size."""
    from cluster_ssl.models.autoencoders import ConvAutoencoder, MLPAutoencoder
    from cluster_ssl.models.backbones import build_backbone

    device = resolve_device(args.device)
    print(machine_summary())
    print("command: python tools/benchmark.py " + " ".join(sys.argv[1:]))
    torch.manual_seed(0)
    images = torch.randn(args.images, 1, args.side, args.side, device=device)
    networks: list[tuple[str, torch.nn.Module, torch.Tensor]] = []
    for width in (float(w) for w in filter(None, args.widths.split(","))):
        backbone = build_backbone("resnet18", in_channels=1, stem="cifar", width=width)
        networks.append((f"ResNet-18, width {width:g}", backbone, images))
    convolutional = ConvAutoencoder((1, args.side, args.side))
    networks.append(("DCEC encoder 32-64-128 convolutions", convolutional.encoder, images))
    fully_connected = MLPAutoencoder(args.side * args.side)
    networks.append(("DEC encoder d-500-500-2000-10", fully_connected.encoder, images.flatten(1)))
    for name in filter(None, args.timm.split(",")):
        timm_backbone = build_backbone(f"timm:{name}", in_channels=3)
        size = timm_backbone.net.pretrained_cfg["input_size"]
        timm_images = torch.randn(args.timm_images, *size, device=device)
        side = "x".join(str(n) for n in size[1:])
        networks.append((f"timm {name}, {side} px", timm_backbone, timm_images))
    batches = [int(b) for b in args.batches.split(",")]
    print("\n| network | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---|" + "---:|" * len(batches))
    for name, network, inputs in networks:
        network.to(device).eval()
        cells = []
        for batch in batches:
            if batch > len(inputs):
                cells.append("-")
                continue
            one_pass = functools.partial(_batched_pass, network, inputs, batch)
            with torch.no_grad():
                one_pass()  # warm-up: allocator, kernel choice
                rates = sorted(_rate(one_pass, device) for _ in range(args.repeats))
            cells.append(f"{1e3 / rates[len(rates) // 2]:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print("\nms per image, median of the repeats")


def add_feature_size(parser: argparse.ArgumentParser, what: str) -> None:
    """``--n`` (``what``, 70,000 as Fashion-MNIST) and ``--dim`` (128) of a feature array."""
    parser.add_argument("--n", type=int, default=70000, help=what)
    parser.add_argument("--dim", type=int, default=128, help="feature dimension")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    augment = commands.add_parser("augment", help=bench_augment.__doc__)
    augment.add_argument("--batch", type=int, default=256, help="images per batch")
    augment.add_argument("--steps", type=int, default=20, help="batches per measurement")
    augment.add_argument("--size", type=int, default=32, help="image side in pixels")
    augment.add_argument("--repeats", type=int, default=5, help="measurements per pipeline")
    augment.add_argument("--workers", type=int, default=2, help="torchvision DataLoader workers")
    augment.add_argument(
        "--kornia-steps", type=int, default=4, help="batches per kornia measurement (0 skips it)"
    )
    augment.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    augment.add_argument(
        "--threads",
        default="",
        help="comma-separated torch intra-op thread counts for the device pipeline "
        "(default: 1 and torch's default)",
    )
    augment.set_defaults(func=bench_augment)

    mining = commands.add_parser("mining", help=bench_mining.__doc__)
    add_feature_size(mining, "number of feature vectors")
    mining.add_argument("--k", type=int, default=20, help="neighbours per sample")
    mining.add_argument("--repeats", type=int, default=3, help="faiss measurements")
    mining.add_argument("--features", help="an (N, d) .npy array to search instead")
    mining.set_defaults(func=bench_mining)

    means = commands.add_parser("kmeans", help=bench_kmeans.__doc__)
    add_feature_size(means, "number of feature vectors")
    means.add_argument("--k", type=int, default=10, help="clusters")
    means.add_argument("--n-init", type=int, default=3, help="restarts")
    means.add_argument("--iterations", type=int, default=50, help="Lloyd iterations")
    means.add_argument("--repeats", type=int, default=3, help="measurements")
    means.add_argument("--features", help="an (N, d) .npy array to cluster instead")
    means.set_defaults(func=bench_kmeans)

    bank = commands.add_parser("bank-loss", help=bench_bank_loss.__doc__)
    bank.add_argument("--batch", type=int, default=256, help="features per step")
    add_feature_size(bank, "memory bank rows (images)")
    bank.add_argument("--temperature", type=float, default=0.1, help="tau")
    bank.add_argument("--repeats", type=int, default=9, help="measured steps")
    bank.add_argument("--block", type=int, help="logits per block (default: the loss's own)")
    bank.set_defaults(func=bench_bank_loss)

    estimator = commands.add_parser("estimator", help=bench_estimator.__doc__)
    estimator.add_argument("name", nargs="?", default="IDEC", help="estimator class name")
    estimator.add_argument("--seeds", default="0", help="comma-separated random_state values")
    estimator.add_argument("--reference", help="also run this package's estimator (clustpy)")
    estimator.set_defaults(func=bench_estimator)

    memory = commands.add_parser("folder-memory", help=bench_folder_memory.__doc__)
    memory.add_argument("--n", type=int, default=20000, help="number of images")
    memory.add_argument("--side", type=int, default=32, help="image side in pixels")
    memory.add_argument("--batch", type=int, default=256, help="training batch size")
    memory.set_defaults(func=bench_folder_memory)

    passes = commands.add_parser("pass-batch", help=bench_pass_batch.__doc__)
    passes.add_argument(
        "--widths", default="0.25,1.0", help="ResNet-18 widths, comma-separated ('' for none)"
    )
    passes.add_argument("--side", type=int, default=28, help="image side in pixels")
    passes.add_argument("--batches", default="16,32,64,128,256,512,1024", help="batch sizes")
    passes.add_argument("--images", type=int, default=2048, help="images per measured pass")
    passes.add_argument("--repeats", type=int, default=3, help="measurements per batch size")
    passes.add_argument("--timm", default="", help="timm model names to add, comma-separated")
    passes.add_argument("--timm-images", type=int, default=512, help="images per timm pass")
    passes.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    passes.set_defaults(func=bench_pass_batch)

    from recipes import RECIPES

    for name in RECIPES.names():
        method = commands.add_parser(name, help=f"time a step of the {name} recipe")
        method.add_argument(
            "--dataset",
            help="default: digits; with --reference, synthetic 32 px RGB images and the "
            "recipe's CPU preset",
        )
        method.add_argument("--data-root")
        method.add_argument("--stage", help="stage to time (default: the recipe's own method)")
        method.add_argument("--batch", type=int, help="batch size (default: the preset's)")
        method.add_argument("--steps", type=int, default=20, help="measured steps")
        method.add_argument("--warmup", type=int, default=3, help="unmeasured steps first")
        method.add_argument("--epochs", type=int, help="measure whole epochs instead of --steps")
        method.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
        method.add_argument("--precision", choices=PRECISION_CHOICES, default="auto")
        method.add_argument("--workers", type=int, default=0, help="loader workers (files)")
        method.add_argument(
            "--pass-batch",
            type=int,
            help="batch of the passes over the dataset (default: by device and network)",
        )
        method.add_argument(
            "--reference",
            choices=("lightly",),
            help="alternate rounds of our step with this library's way of training the "
            f"same network ({INSTALL_HINT}); prints 'ratio ours/lightly'",
        )
        method.add_argument(
            "--contention",
            action="store_true",
            help="alternate rounds alone and beside a competing job; prints the slowdown",
        )
        method.add_argument(
            "--rounds", type=int, default=5, help="rounds of each (--reference, --contention)"
        )
        method.add_argument(
            "--speed",
            choices=("off", "auto"),
            default="off",
            help="with --reference or --contention: auto runs train's --speed auto trial "
            "first (as for a run of at least 500 steps) and times our step with its choice; "
            "off (default): the fixed settings and flags given",
        )
        method.add_argument(
            "--peer-workers", type=int, default=2, help="lightly's DataLoader workers"
        )
        method.add_argument(
            "--load-threads", type=int, default=2, help="threads of the competing job"
        )
        add_set_option(method)
        add_speed_options(method)
        method.set_defaults(func=bench_method)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as error:  # a setting the recipe or trainer refuses: one line
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()

"""``--speed auto``: time a few steps of each speed setting at the start of a run and keep
the fastest (:mod:`cluster_ssl.engine.speed` says which settings are candidates).

Everything is timed on a copy of the run's network, on inputs drawn from a generator of its
own, with every random generator of the process saved before and restored after (a
DataLoader draws its workers' seed from torch's): the run then starts from exactly the
state it would have had without the trial, so its numbers depend only on the settings kept.

A step here is the network's forward and backward pass on one micro-batch of the run's image
size (or input width), under the run's autocast precision: what channels_last, bf16 and
torch.compile change. The whole trial is held to ``fraction`` of the run's training time as
the first timed steps estimate it: candidates whose timing would cost more are left untried
(and the line printed says so), and a run of fewer than ``min_run_steps`` optimiser steps is
not measured at all, its trial would cost more than it could save.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from cluster_ssl.data.base import ImageDataset
from cluster_ssl.data.loaders import StreamingBatches
from cluster_ssl.engine.speed import (
    SpeedChoice,
    compile_is_candidate,
    compile_pays_back,
    fastest,
)
from cluster_ssl.runtime.device import autocast, dataset_pass_batch_size
from cluster_ssl.runtime.distributed import DistInfo
from cluster_ssl.runtime.memory import is_out_of_memory
from cluster_ssl.runtime.state import rng_state, set_rng_state

#: whole-dataset pass batches tried (the device's default is always among them)
PASS_BATCHES = {"cpu": (32, 64, 128, 256, 512), "cuda": (256, 512, 1024)}
#: what a first torch.compile is assumed to cost before it is tried: a run whose steps cannot
#: save this much even at half the step time does not try it
COMPILE_SECONDS_GUESS = 30.0


@dataclass
class TrialRun:
    """What the trial needs to know of the run.

    ``channels_last`` is None when it is a candidate (True when ``--channels-last`` fixed
    it); ``compile_backend`` is ``--compile``'s backend (None: a candidate on CUDA);
    ``threads_fixed`` is True when the user chose torch's threads (``OMP_NUM_THREADS``).
    """

    network: nn.Module
    input_side: int
    micro_batch: int
    total_steps: int
    device: torch.device
    precision: torch.dtype | None
    dataset: ImageDataset
    num_workers: int
    channels_last: bool | None = None
    compile_backend: str | None = None
    threads_fixed: bool = field(
        default_factory=lambda: "OMP_NUM_THREADS" in os.environ or "MKL_NUM_THREADS" in os.environ
    )


@dataclass
class SpeedTrial:
    """Times the candidates with ``clock`` (injectable: tests pass a fake one, which may read
    ``timing``, the candidate being timed) over ``steps`` steps after one warm-up."""

    clock: Callable[[], float] = time.perf_counter
    steps: int = 3
    fraction: float = 0.05
    #: a full trial times about 25 steps' worth of work (a warm-up and ``steps`` calls of
    #: the step in two formats and under bf16, and of five pass batches): 5% of 500 steps
    min_run_steps: int = 500
    #: the candidate being timed ("step nchw", "pass 64", "loader 2x1"...; "" between)
    timing: str = ""
    _started: float = 0.0
    _budget: float = math.inf  # until the first step is timed
    _skipped: list[str] = field(default_factory=list)

    def choose(self, run: TrialRun) -> SpeedChoice:
        """The fastest settings for ``run`` (today's defaults where nothing beat them)."""
        fixed = SpeedChoice(mode="auto", channels_last=bool(run.channels_last))
        if run.total_steps < self.min_run_steps:
            return replace(
                fixed,
                note=f"a run of {run.total_steps} steps is too short to pay for a trial "
                f"(from {self.min_run_steps}); defaults kept",
            )
        saved, threads = rng_state(), torch.get_num_threads()
        try:
            return self._choose(run)
        except (MemoryError, RuntimeError) as error:  # the network refused the trial's input
            reason = "out of memory" if is_out_of_memory(error) else str(error).splitlines()[0]
            return replace(fixed, note=f"the trial could not run ({reason}); defaults kept")
        finally:
            set_rng_state(saved)
            torch.set_num_threads(threads)

    def _choose(self, run: TrialRun) -> SpeedChoice:
        self._started, self._budget, self._skipped = self.clock(), math.inf, []
        network = copy.deepcopy(run.network).to(run.device)
        images = _proxy_input(network, run.micro_batch, run.input_side, run.device)
        measured: dict[str, float] = {}

        def step(channels_last: bool, dtype: torch.dtype | None = run.precision) -> float:
            _memory_format(network, channels_last)
            label = f"step {'nhwc' if channels_last else 'nchw'}" + (
                "" if dtype == run.precision else " bf16"
            )
            seconds = self._seconds(label, lambda: _train_step(network, images, run, dtype))
            _note(measured, label, seconds)
            return seconds

        channels_last = bool(run.channels_last)
        steps = {channels_last: step(channels_last)}
        eager_step = steps[channels_last]
        self._budget = self.fraction * eager_step * run.total_steps
        candidate = run.channels_last is None and _has_convolutions(network)
        if candidate and self._affords(self._timing_cost(eager_step), "channels_last"):
            steps[True] = step(True)
            channels_last = fastest(steps, default=False)
        eager_step = steps[channels_last]

        _memory_format(network, channels_last)
        pass_batch = self._pass_batch(network, run, eager_step, measured)
        compile_backend = self._compile(network, images, run, eager_step, measured)
        threads, workers = self._loader(run, eager_step, images, network, measured)

        # last: only said, never chosen, so it takes what the choices left of the share
        bf16_speedup = None
        measurable = run.device.type == "cpu" and run.precision is None and _cpu_has_bf16()
        if measurable and self._affords(self._timing_cost(eager_step), "bf16"):
            bf16_step = step(channels_last, torch.bfloat16)
            bf16_speedup = None if math.isinf(bf16_step) else eager_step / bf16_step
        note = ""
        if self._skipped:
            kinds = dict.fromkeys(self._skipped)  # in order, once each
            untried = [
                f"{self._skipped.count(k)} {k}" if self._skipped.count(k) > 1 else k for k in kinds
            ]
            note = (
                f"left untried to keep the trial within {self.fraction:.0%} of the run: "
                + ", ".join(untried)
            )
        return SpeedChoice(
            mode="auto",
            channels_last=channels_last,
            pass_batch_size=pass_batch,
            compile_backend=compile_backend,
            threads=threads,
            workers=workers,
            bf16_speedup=None if bf16_speedup is None else round(bf16_speedup, 3),
            trial_seconds=round(self.clock() - self._started, 3),
            measured={key: round(value, 6) for key, value in measured.items()},
            note=note,
        )

    def _pass_batch(
        self, network: nn.Module, run: TrialRun, eager_step: float, measured: dict[str, float]
    ) -> int | None:
        """The batch of whole-dataset passes of least time per image (none is timed when
        the default's pass, costed at a training step's time per image, does not fit)."""
        default = dataset_pass_batch_size(run.device, network)
        guess = self._timing_cost(default * eager_step / run.micro_batch)
        if not self._affords(guess, "pass batches"):
            return None
        sizes = sorted(
            {*PASS_BATCHES.get(run.device.type, ()), default}, key=lambda b: (b != default, b)
        )
        per_image: dict[int, float] = {}
        network.eval()
        for size in sizes:
            cost = self._timing_cost(size * per_image.get(default, 0.0))
            if per_image and not self._affords(cost, "pass batches"):
                continue
            batch = _proxy_input(network, size, run.input_side, run.device)
            try:
                seconds = self._seconds(f"pass {size}", lambda b=batch: _pass(network, b, run))
            except (MemoryError, RuntimeError) as error:
                if not is_out_of_memory(error) or size == default:
                    raise
                if run.device.type == "cuda":  # what the failed pass held, for the run
                    torch.cuda.empty_cache()
                continue  # too large for this device: not a candidate
            per_image[size] = seconds / size
            _note(measured, f"pass {size}", per_image[size])
        network.train()
        best = fastest(per_image, default=default)
        return None if best == default else best

    def _compile(
        self,
        network: nn.Module,
        images: torch.Tensor,
        run: TrialRun,
        eager_step: float,
        measured: dict[str, float],
    ) -> str | None:
        """``inductor`` when a compiled copy's steps pay its compile time back in the run."""
        if not compile_is_candidate(run.device, run.compile_backend):
            return None
        if 0.5 * eager_step * run.total_steps < COMPILE_SECONDS_GUESS:
            return None  # cannot pay back even at half the step time
        if not self._affords(
            COMPILE_SECONDS_GUESS + self._timing_cost(eager_step), "torch.compile"
        ):
            return None
        compiled = torch.compile(copy.deepcopy(network), backend="inductor")
        self.timing = "compile"
        started = self.clock()
        _train_step(compiled, images, run, run.precision)  # compiles
        compile_seconds = self.clock() - started
        self.timing = ""
        compiled_step = self._seconds(
            "step compiled", lambda: _train_step(compiled, images, run, run.precision)
        )
        _note(measured, "compile", compile_seconds)
        _note(measured, "step compiled", compiled_step)
        if compile_pays_back(eager_step, compiled_step, compile_seconds, run.total_steps):
            return "inductor"
        return None

    def _loader(
        self,
        run: TrialRun,
        eager_step: float,
        images: torch.Tensor,
        network: nn.Module,
        measured: dict[str, float],
    ) -> tuple[int | None, int | None]:
        """Torch's threads and DataLoader workers for file-backed data: the pair whose steps
        (decoding included, workers started as each epoch starts them) take least time."""
        if run.dataset.in_memory:
            return None, None
        default = (torch.get_num_threads(), run.num_workers)
        loader_steps = max(2 * self.steps, 1)
        seconds: dict[tuple[int, int], float] = {}
        for pair in loader_candidates(default, _cores(), run.threads_fixed):
            timings = 1 if seconds else 2  # the first read of the files is not counted
            if not self._affords(timings * loader_steps * eager_step, "thread/worker pairs"):
                continue
            if not seconds:  # fills the page cache, which would favour later candidates
                self._time_loader(default, run, images, network, loader_steps)
            seconds[pair] = self._time_loader(pair, run, images, network, loader_steps)
            _note(measured, f"loader {pair[0]}x{pair[1]}", seconds[pair])
        torch.set_num_threads(default[0])
        if default not in seconds:
            return None, None
        chosen = fastest(seconds, default=default)
        torch.set_num_threads(chosen[0])  # what the rest of the trial runs with
        return chosen

    def _time_loader(
        self,
        pair: tuple[int, int],
        run: TrialRun,
        images: torch.Tensor,
        network: nn.Module,
        steps: int,
    ) -> float:
        threads, workers = pair
        torch.set_num_threads(threads)
        batches = StreamingBatches(
            run.dataset,
            run.micro_batch,
            run.device,
            num_workers=workers,
            shuffle=False,
            drop_last=True,
            seed=0,
            dist=DistInfo(),
        )
        count = min(steps, len(batches))
        self.timing = f"loader {threads}x{workers}"
        started = self.clock()
        loaded: Iterator = iter(batches)
        for _ in range(count):
            next(loaded)
            _train_step(network, images, run, run.precision)
        _synchronize(run.device)
        seconds = (self.clock() - started) / max(count, 1)
        self.timing = ""
        del loaded  # ends the workers
        return seconds

    def _seconds(self, label: str, fn: Callable[[], None]) -> float:
        """Seconds of one call of ``fn``: the mean of ``steps`` calls after a warm-up;
        infinite (the candidate loses) when a call ends beyond the trial's share of the run,
        as a candidate far slower than foreseen does (bf16 on a CPU without fast kernels)."""
        self.timing, started = label, None
        try:
            for call in range(self.steps + 1):
                fn()
                _synchronize_all()
                now = self.clock()
                if now - self._started > self._budget:
                    self._skipped.append(f"{label} (stopped)")
                    return math.inf
                if call == 0:
                    started = now
            return (now - started) / self.steps
        finally:
            self.timing = ""

    def _timing_cost(self, seconds_a_call: float) -> float:
        """The cost of timing a candidate: a warm-up and ``steps`` calls."""
        return (self.steps + 1) * seconds_a_call

    def _affords(self, seconds: float, what: str) -> bool:
        """Whether ``seconds`` more still fit the trial's share of the run (else ``what``
        is named among the candidates left untried)."""
        spent = self.clock() - self._started
        if spent + seconds <= self._budget:
            return True
        self._skipped.append(what)
        return False


def loader_candidates(
    default: tuple[int, int], cores: int, threads_fixed: bool
) -> list[tuple[int, int]]:
    """(threads, workers) pairs tried for file-backed data, ``default`` first: 0, 1, 2 and
    the asked workers (at most the cores), each with the default threads and, unless the
    user fixed them, with the cores the workers leave."""
    threads, workers = default
    pairs = [default]
    for count in sorted({0, 1, 2, workers} & set(range(cores + 1))):
        options = {threads} if threads_fixed else {threads, max(1, cores - count)}
        pairs += [(t, count) for t in sorted(options) if (t, count) not in pairs]
    return pairs


def _note(measured: dict[str, float], label: str, seconds: float) -> None:
    """Keep a candidate's time for the record (not one stopped, whose time is infinite)."""
    if math.isfinite(seconds):
        measured[label] = seconds


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpu_has_bf16() -> bool:
    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def _has_convolutions(network: nn.Module) -> bool:
    return any(isinstance(module, nn.Conv2d) for module in network.modules())


def _memory_format(network: nn.Module, channels_last: bool) -> None:
    network.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _proxy_input(network: nn.Module, batch: int, side: int, device: torch.device) -> torch.Tensor:
    """Random inputs the network takes: images of ``side`` pixels with the channels of its
    first convolution, or vectors as wide as its first linear layer's input."""
    generator = torch.Generator().manual_seed(0)  # not the run's generators
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            shape = (batch, module.in_channels, side, side)
            break
        if isinstance(module, nn.Linear):
            shape = (batch, module.in_features)
            break
    else:
        raise RuntimeError(f"{type(network).__name__} has no convolution or linear input layer")
    return torch.randn(shape, generator=generator).to(device)


def _scalar(output: object) -> torch.Tensor:
    """A scalar of every tensor in a network's output, to call backward on."""
    if isinstance(output, torch.Tensor):
        return output.float().square().mean()
    values = output.values() if isinstance(output, dict) else output
    return torch.stack([_scalar(value) for value in values]).sum()


def _train_step(
    network: nn.Module, images: torch.Tensor, run: TrialRun, dtype: torch.dtype | None = None
) -> None:
    network.zero_grad(set_to_none=True)
    with autocast(run.device, dtype):
        loss = _scalar(network(images))
    loss.backward()


@torch.no_grad()
def _pass(network: nn.Module, images: torch.Tensor, run: TrialRun) -> None:
    with autocast(run.device, run.precision):
        network(images)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _synchronize_all() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()

"""OpenMP threads that sleep between parallel regions instead of spinning, so a training
step keeps its pace on a CPU it shares with other work.

torch and faiss each load their own copy of GNU OpenMP (libgomp). By default a libgomp
thread that has finished its share of a parallel region spins for ``GOMP_SPINCOUNT`` =
300,000 iterations (about 3 ms) waiting for the next one before it sleeps. A training step
on a CPU is hundreds of short parallel regions, so its threads spin most of the time they
do not compute. Alone on its cores that costs nothing; beside another job the spinning
threads take the cores from that job's threads and from their own partner thread, which
then finishes its share of each region one scheduler tick late: a step was 7-18x slower
beside one 2-thread job (issue 26; docs/BENCHMARKS.md, "A step beside a competing job").
With ``OMP_WAIT_POLICY=PASSIVE`` a waiting thread sleeps at once (libgomp's spin count 0).

libgomp reads the variable once, when it is loaded (``import torch``, ``import faiss``), so
:func:`apply_wait_policy` runs when ``cluster_ssl`` is imported, before either is. The
wait policy changes when a thread sleeps, not how work is split between threads (the
split depends only on the thread count), so every result stays bit-for-bit the same and a
resumed run continues exactly. A wait policy the user chose is kept: any of
:data:`USER_CHOICES` in the environment (``GOMP_SPINCOUNT`` overrides the policy's spin
count in libgomp; ``KMP_BLOCKTIME`` is the LLVM / Intel runtimes' equivalent).
``OMP_NUM_THREADS`` and the thread count are left alone.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Container, MutableMapping
from dataclasses import dataclass

#: the setting applied when the user has chosen none
WAIT_POLICY = ("OMP_WAIT_POLICY", "PASSIVE")
#: environment variables by which a user picks how OpenMP threads wait
USER_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
#: modules that load an OpenMP runtime, which reads the environment as it loads
OPENMP_MODULES = ("torch", "faiss")


@dataclass(frozen=True)
class WaitPolicy:
    """What :func:`apply_wait_policy` found and did."""

    #: the variables it set (none when the user had chosen)
    set_here: dict[str, str]
    #: the user's own choices among :data:`USER_CHOICES`
    user_choice: dict[str, str]
    #: modules of :data:`OPENMP_MODULES` imported before: their runtime kept its default
    loaded_before: tuple[str, ...]

    def describe(self) -> str:
        """One line for a benchmark's header: how this process's OpenMP threads wait."""
        if self.user_choice:
            chosen = ", ".join(f"{name}={value}" for name, value in self.user_choice.items())
            return f"OpenMP wait: {chosen} (the user's)"
        line = "OpenMP wait: " + ", ".join(f"{k}={v}" for k, v in self.set_here.items())
        if self.loaded_before:
            return line + f", too late for {', '.join(self.loaded_before)} (imported first)"
        return line + " (cluster-ssl's default)"


def apply_wait_policy(environ: MutableMapping[str, str], loaded: Container[str]) -> WaitPolicy:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` unless one of :data:`USER_CHOICES` is
    there; ``loaded`` (``sys.modules``) says which OpenMP runtimes are loaded already."""
    user = {name: environ[name] for name in USER_CHOICES if name in environ}
    early = tuple(module for module in OPENMP_MODULES if module in loaded)
    if user:
        return WaitPolicy({}, user, early)
    name, value = WAIT_POLICY
    environ[name] = value
    return WaitPolicy({name: value}, {}, early)


@functools.cache
def process_wait_policy() -> WaitPolicy:
    """This process's policy: applied at the first call (``import cluster_ssl`` makes it),
    the same record at every later one."""
    return apply_wait_policy(os.environ, sys.modules)

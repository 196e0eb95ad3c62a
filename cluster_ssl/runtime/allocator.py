"""Large CPU buffers kept by the process from one step to the next, instead of handed back
to the kernel and faulted in again every step.

glibc's malloc serves a request above its mmap threshold (128 KiB, raised as such blocks
are freed, up to 32 MiB) with a fresh ``mmap`` and unmaps it when it is freed. A training
step on a CPU allocates the same activations every step; those above 32 MiB (a
quarter-width ResNet-18's first stage at 512 x 16 x 32 x 32 float32 is 33.5 MiB, SimCLR's
two views in one batch) are mapped anew each step, and every 4 KiB page of them faults and
is zeroed when first touched: 30,000-72,000 minor faults a step for that network's forward
and backward at batch 512, 10-15% of the step (docs/BENCHMARKS.md, "Page faults").

With ``M_MMAP_MAX`` = 0 malloc serves every block from its heaps, and with
``M_TRIM_THRESHOLD`` at its largest (2 GiB) it keeps freed memory for the next request
rather than returning it: the faults go, and the same steps ran 10-15% faster. The cost is
that the process keeps its peak heap (up to 2 GiB of it free) until it ends, as jemalloc or
tcmalloc would. Where a block lives changes no arithmetic: results stay bit for bit the
same (tests/runtime/test_allocator.py).

:func:`keep_freed_memory` runs when ``cluster_ssl`` is imported. A choice the user made is
kept: any of :data:`USER_CHOICES` in the environment (glibc reads those itself at start,
``GLIBC_TUNABLES`` among them), or another allocator preloaded (``LD_PRELOAD``). Elsewhere
than on glibc (macOS, Windows, musl) nothing is done.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: what is set, in order: no mmap'd blocks, keep up to 2 GiB free at the top of the heap
SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))
#: environment variables by which a user configures glibc's malloc or replaces it
USER_CHOICES = (
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "GLIBC_TUNABLES",
    "LD_PRELOAD",
)


@dataclass(frozen=True)
class AllocatorChoice:
    """What :func:`keep_freed_memory` found and did."""

    #: whether glibc's malloc now keeps freed memory
    applied: bool
    #: why not, when it was not ("" when applied)
    reason: str = ""

    def describe(self) -> str:
        """One line for a benchmark's header."""
        if self.applied:
            return "malloc: freed memory kept, no mmap'd blocks (cluster-ssl's default)"
        return f"malloc: as it was ({self.reason})"


def glibc_mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, or None where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(None)  # the running program's symbols, the C library's among them
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
    except (OSError, AttributeError, TypeError):  # TypeError: Windows wants a name
        return None
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt


def keep_freed_memory(
    environ: Mapping[str, str], mallopt: Callable[[int, int], int] | None
) -> AllocatorChoice:
    """Apply :data:`SETTINGS` with ``mallopt`` unless the user configured the allocator in
    ``environ`` or there is no glibc (``mallopt`` None)."""
    user = [name for name in USER_CHOICES if environ.get(name)]
    if user:
        return AllocatorChoice(False, f"the user's {', '.join(user)}")
    if mallopt is None:
        return AllocatorChoice(False, "not glibc")
    if not all(mallopt(param, value) == 1 for param, value in SETTINGS):
        return AllocatorChoice(False, "mallopt refused")
    return AllocatorChoice(True)


@functools.cache
def process_allocator() -> AllocatorChoice:
    """This process's choice: applied at the first call (``import cluster_ssl`` makes it)."""
    return keep_freed_memory(os.environ, glibc_mallopt())

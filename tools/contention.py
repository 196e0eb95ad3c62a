"""A competing job on the same cores, for ``benchmark.py METHOD --contention``: another
user's torch process doing matrix products on 2 threads, as an unrelated training run
would, with torch's defaults (its environment without the wait policy cluster-ssl set
for this process)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from cluster_ssl.runtime.threads import process_wait_policy

#: the competing job: says it is ready once torch is loaded, then multiplies until killed
#: (or until its parent, the benchmark, is gone)
COMPETITOR = """
import os
import torch
torch.set_num_threads({threads})
a = torch.randn({side}, {side})
print("ready", flush=True)
while os.getppid() == {parent}:
    for _ in range(100):
        a @ a
"""


def competitor_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``environ`` without the variables cluster-ssl's wait policy set in this process."""
    ours = process_wait_policy().set_here
    return {name: value for name, value in environ.items() if name not in ours}


@contextmanager
def competing_load(threads: int = 2, side: int = 256) -> Iterator[subprocess.Popen]:
    """A process multiplying ``side`` x ``side`` matrices on ``threads`` threads for as long
    as the block runs (started and ready when the block begins, killed when it ends)."""
    code = COMPETITOR.format(threads=threads, side=side, parent=os.getpid())
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=competitor_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if process.stdout is None or process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the competing job did not start (exit code {process.poll()})")
        yield process
    finally:
        process.kill()
        process.wait()

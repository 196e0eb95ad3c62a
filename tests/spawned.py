"""The end of a worker process that ``torch.multiprocessing.spawn`` started for a test."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import torch.distributed as dist


def finish_worker() -> NoReturn:
    """Destroy the process group, then leave without the interpreter's shutdown.

    gloo's threads can outlive ``destroy_process_group`` and abort that shutdown
    ("terminate called without an active exception", SIGABRT), which ``spawn`` reports as a
    failed rank although the worker's results are written. A worker that raised does not
    get here: its exception still fails the test.
    """
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

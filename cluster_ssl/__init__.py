"""cluster-ssl: self-supervised, contrastive deep clustering of images.

The scikit-learn estimators are importable from the top level
(``from cluster_ssl import IDEC``); they load torch and scikit-learn on first use, so the
command line starts without them.
"""

from __future__ import annotations

from typing import Any

from cluster_ssl.runtime.allocator import process_allocator
from cluster_ssl.runtime.threads import process_wait_policy

# before anything of ours imports torch or faiss: their OpenMP threads then sleep, not
# spin, while they wait (cluster_ssl/runtime/threads.py says why)
process_wait_policy()
# malloc keeps large freed buffers for the next step (cluster_ssl/runtime/allocator.py)
process_allocator()


def __getattr__(name: str) -> Any:
    if name[:1].isupper():  # an estimator's class name (cluster_ssl.estimators.NAMES)
        from cluster_ssl import estimators

        if name in estimators.NAMES:
            return getattr(estimators, name)
    raise AttributeError(f"module 'cluster_ssl' has no attribute {name!r}")

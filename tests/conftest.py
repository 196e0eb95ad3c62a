"""Suite-wide settings and fixtures."""

import pytest
import torch

from cluster_ssl.methods import base

# One intra-op thread: the tests use tiny tensors, where extra threads only add contention
# (and on a busy 2-core machine oversubscription makes them many times slower).
torch.set_num_threads(1)


@pytest.fixture
def pass_batches(monkeypatch):
    """The batch size of every ``ctx.embed`` pass over a dataset during the test."""
    sizes = []
    original = base.embed

    def recording(*args, batch_size, **kwargs):
        sizes.append(batch_size)
        return original(*args, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(base, "embed", recording)
    return sizes

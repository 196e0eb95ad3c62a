"""Suite-wide settings."""

import torch

# One intra-op thread: the tests use tiny tensors, where extra threads only add contention
# (and on a busy 2-core machine oversubscription makes them many times slower).
torch.set_num_threads(1)

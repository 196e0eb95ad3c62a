"""glibc's malloc told to keep large freed buffers (cluster_ssl/runtime/allocator.py): the
settings applied in order, a user's own allocator choice kept, nothing done without glibc,
applied when cluster_ssl is imported, and a training step bit for bit the same with it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cluster_ssl.runtime.allocator import (
    M_MMAP_MAX,
    M_TRIM_THRESHOLD,
    USER_CHOICES,
    AllocatorChoice,
    glibc_mallopt,
    keep_freed_memory,
)


def recording(result: int = 1):
    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return result

    return mallopt, calls


def test_no_mmap_and_no_trimming_are_set_in_that_order():
    mallopt, calls = recording()
    assert keep_freed_memory({}, mallopt) == AllocatorChoice(True)
    assert calls == [(M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1)]
    assert "freed memory kept" in AllocatorChoice(True).describe()


@pytest.mark.parametrize("name", USER_CHOICES)
def test_a_users_allocator_choice_is_kept(name):
    mallopt, calls = recording()
    choice = keep_freed_memory({name: "1"}, mallopt)
    assert calls == [] and not choice.applied
    assert choice.describe() == f"malloc: as it was (the user's {name})"


def test_without_glibc_or_when_refused_nothing_is_claimed():
    assert keep_freed_memory({}, None) == AllocatorChoice(False, "not glibc")
    mallopt, _ = recording(result=0)
    assert keep_freed_memory({}, mallopt) == AllocatorChoice(False, "mallopt refused")


STEP = """
import hashlib, sys
import cluster_ssl
from cluster_ssl.runtime.allocator import process_allocator
import torch
from cluster_ssl.models.backbones import build_backbone
torch.manual_seed(0)
torch.set_num_threads(1)
net = build_backbone("resnet18", in_channels=3, stem="cifar", width=0.25)
optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
x = torch.randn(512, 3, 32, 32)  # first-stage activations of 33.5 MiB: above mmap's 32
for _ in range(2):
    optimizer.zero_grad()
    net(x).square().mean().backward()
    optimizer.step()
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in net.parameters()))
print(process_allocator().applied, digest.hexdigest())
"""


@pytest.mark.slow
@pytest.mark.skipif(glibc_mallopt() is None, reason="needs glibc")
def test_training_steps_are_bit_for_bit_the_same_with_it():
    def run(extra_env: dict[str, str]) -> list[str]:
        env = {k: v for k, v in os.environ.items() if k not in USER_CHOICES}
        done = subprocess.run(
            [sys.executable, "-c", STEP],
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return done.stdout.split()

    applied, kept = run({})
    # glibc's default top pad, named: a user's choice, so malloc stays as glibc starts it
    plain, default = run({"MALLOC_TOP_PAD_": "131072"})
    assert (applied, plain) == ("True", "False")
    assert kept == default

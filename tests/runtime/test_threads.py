"""The OpenMP wait policy: set when cluster_ssl is imported unless the user chose one, too
late for a runtime loaded before, and without changing any result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster_ssl.runtime.threads import USER_CHOICES, apply_wait_policy, process_wait_policy

REPO = Path(__file__).resolve().parents[2]


def test_sleeping_threads_are_the_default():
    environ: dict[str, str] = {"OMP_NUM_THREADS": "2"}
    policy = apply_wait_policy(environ, loaded={})
    assert environ == {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
    assert policy.set_here == {"OMP_WAIT_POLICY": "PASSIVE"} and policy.user_choice == {}
    assert policy.describe() == "OpenMP wait: OMP_WAIT_POLICY=PASSIVE (cluster-ssl's default)"


@pytest.mark.parametrize("name", USER_CHOICES)
def test_a_wait_setting_of_the_user_is_kept(name):
    environ = {name: "1000"}
    policy = apply_wait_policy(environ, loaded={})
    assert environ == {name: "1000"}
    assert policy.set_here == {} and policy.user_choice == {name: "1000"}
    assert policy.describe() == f"OpenMP wait: {name}=1000 (the user's)"


def test_a_runtime_loaded_before_is_named():
    policy = apply_wait_policy({}, loaded={"torch": object(), "numpy": object()})
    assert policy.loaded_before == ("torch",)
    assert policy.describe().endswith("too late for torch (imported first)")


def test_the_process_policy_is_applied_once():
    assert process_wait_policy() is process_wait_policy()


def _python(code: str, **env: str) -> str:
    """``code`` run by a fresh interpreter on this checkout, with ``env`` added to an
    environment without any OpenMP wait setting; its stdout."""
    clean = {k: v for k, v in os.environ.items() if k not in USER_CHOICES}
    clean["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return done.stdout.strip()


SHOW = "import os, sys, {module}; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"


@pytest.mark.parametrize("module", ["cluster_ssl", "cluster_ssl.cli"])
def test_importing_the_package_sets_it_before_torch_loads(module):
    assert _python(SHOW.format(module=module)) == "PASSIVE False"
    assert _python(SHOW.format(module=module), OMP_WAIT_POLICY="ACTIVE") == "ACTIVE False"
    assert _python(SHOW.format(module=module), GOMP_SPINCOUNT="300000") == "None False"


#: a training step of a small convolutional network on 2 threads; prints a digest of the
#: weights after it
STEP = """
import hashlib
import cluster_ssl
import torch
torch.set_num_threads(2)
torch.manual_seed(0)
net = torch.nn.Sequential(
    torch.nn.Conv2d(3, 16, 3), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
    torch.nn.Flatten(), torch.nn.Linear(16 * 30 * 30, 10),
)
opt = torch.optim.Adam(net.parameters())
for _ in range(3):
    opt.zero_grad()
    net(torch.randn(64, 3, 32, 32)).logsumexp(1).mean().backward()
    opt.step()
digest = hashlib.sha256()
for p in net.parameters():
    digest.update(p.detach().numpy().tobytes())
print(digest.hexdigest())
"""


def test_sleeping_threads_train_bit_for_bit_as_spinning_ones():
    sleeping = _python(STEP)
    assert sleeping == _python(STEP, GOMP_SPINCOUNT="300000")  # libgomp's default spinning
    assert sleeping == _python(STEP, OMP_WAIT_POLICY="ACTIVE")

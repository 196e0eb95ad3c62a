"""Two real gloo processes against one process: gathered NT-Xent and CC losses and gradients.

Each rank holds half of a fixed batch. What DDP optimises is the mean of the ranks' losses:
it averages the parameter gradients over ranks (all-reduce sum / world size). A parameter
gradient is sum_s J_s^T g_s / W, with g_s rank s's gradient at its own rows, so the gradient
of the optimised objective at rank s's rows is g_s / W: that is what is compared with the
gradient a single process gets from the loss on the whole batch (no sum over ranks here,
since each rank's rows are different samples; the sum over ranks happens inside the
gather's backward). A DDP-wrapped model checks the parameter gradients DDP itself
averages. A control swaps in a gather whose backward does not all-reduce and shows that the
comparison catches it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import cluster_ssl.losses.cc as cc_module
import cluster_ssl.losses.contrastive as contrastive_module
from cluster_ssl.losses.cc import cluster_contrastive_loss
from cluster_ssl.losses.contrastive import nt_xent
from cluster_ssl.runtime.distributed import gather_with_grad, rank_offset
from tests.spawned import finish_worker

pytestmark = pytest.mark.slow

WORLD = 2
BATCH = 8  # the whole batch; each rank holds BATCH // WORLD rows
DIM, K, IN = 5, 3, 6
TAU = 0.5
UNEVEN = (3, 5)  # rows per rank for the uneven gather, BATCH in all


def fixed_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "z_a": torch.randn(BATCH, DIM, generator=g, dtype=torch.float64),
        "z_b": torch.randn(BATCH, DIM, generator=g, dtype=torch.float64),
        "p_a": torch.softmax(torch.randn(BATCH, K, generator=g, dtype=torch.float64), dim=1),
        "p_b": torch.softmax(torch.randn(BATCH, K, generator=g, dtype=torch.float64), dim=1),
        "x_a": torch.randn(BATCH, IN, generator=g, dtype=torch.float64),
        "x_b": torch.randn(BATCH, IN, generator=g, dtype=torch.float64),
        "weights": torch.randn(BATCH, DIM, generator=g, dtype=torch.float64),
    }


def fixed_model() -> nn.Linear:
    torch.manual_seed(1)
    return nn.Linear(IN, K, dtype=torch.float64)


def model_loss(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
    """CC's total loss with one linear layer as both heads: one forward for both views."""
    out = model(torch.cat([x_a, x_b]))
    z_a, z_b = out.chunk(2)
    cluster, _ = cluster_contrastive_loss(torch.softmax(z_a, 1), torch.softmax(z_b, 1))
    return nt_xent(z_a, z_b, TAU) + cluster


def leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_(True) for t in tensors]


class _GatherNoReduce(torch.autograd.Function):
    """The trap: gather with the local slice's gradient only (no all-reduce in backward)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(WORLD)]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def step(fn: Any, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's loss and the objective's gradient at its rows, g / W (views along dim 1)."""
    inputs = leaves(*tensors)
    loss = fn(*inputs)
    loss.backward()
    return loss.detach(), torch.cat([t.grad for t in inputs], dim=1) / WORLD


def ddp_step(x_a: torch.Tensor, x_b: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A real DDP model's loss and the parameter gradients DDP averaged over the ranks.

    The DDP wrapper is released on return, before the process group is destroyed.
    """
    model = DistributedDataParallel(fixed_model())
    loss = model_loss(model, x_a, x_b)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        data = fixed_batch()
        half = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        z_a, z_b, p_a, p_b = (data[key][half] for key in ("z_a", "z_b", "p_a", "p_b"))
        results: dict[str, Any] = {}

        def cluster(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return cluster_contrastive_loss(a, b)[0]

        def instance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return nt_xent(a, b, TAU)

        results["nt_xent"] = step(instance, z_a, z_b)
        results["cluster"] = step(cluster, p_a, p_b)

        # the control: the same losses through a gather that skips the all-reduce
        contrastive_module.gather_with_grad = _GatherNoReduce.apply
        cc_module.gather_with_grad = _GatherNoReduce.apply
        try:
            results["nt_xent_no_reduce"] = step(instance, z_a, z_b)
            results["cluster_no_reduce"] = step(cluster, p_a, p_b)
        finally:
            contrastive_module.gather_with_grad = gather_with_grad
            cc_module.gather_with_grad = gather_with_grad

        results["model"] = ddp_step(data["x_a"][half], data["x_b"][half])

        # uneven rows: the gather concatenates in rank order; the backward sums over ranks
        start = sum(UNEVEN[:rank])
        x = leaves(data["weights"][start : start + UNEVEN[rank]])[0]
        gathered = gather_with_grad(x)
        (gathered * data["weights"]).sum().backward()
        results["uneven"] = (gathered.detach(), rank_offset(x.shape[0]), x.grad.clone())

        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()
    except BaseException:
        dist.destroy_process_group()
        raise
    finish_worker()


def test_two_gloo_ranks_match_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    data = fixed_batch()

    def reference(fn: Any, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ia, ib = leaves(a, b)
        loss = fn(ia, ib)
        loss.backward()
        return loss.detach(), torch.cat([ia.grad, ib.grad], dim=1)

    def rows(r: int) -> slice:
        return slice(r * BATCH // WORLD, (r + 1) * BATCH // WORLD)

    # NT-Xent: the single process's mean over all 2 * BATCH anchors is the mean of the
    # ranks' means over their own anchors, and the DDP-averaged gradients are its gradient
    loss, grad = reference(lambda a, b: nt_xent(a, b, TAU), data["z_a"], data["z_b"])
    mean_loss = sum(res["nt_xent"][0] for res in ranks) / WORLD
    torch.testing.assert_close(mean_loss, loss, rtol=0, atol=1e-5)
    for r, res in enumerate(ranks):
        torch.testing.assert_close(res["nt_xent"][1], grad[rows(r)], rtol=0, atol=1e-5)
        assert not torch.allclose(res["nt_xent_no_reduce"][1], grad[rows(r)], atol=1e-5)

    # CC's cluster loss: every rank computes the single-process loss on the gathered batch
    loss, grad = reference(lambda a, b: cluster_contrastive_loss(a, b)[0], data["p_a"], data["p_b"])
    for r, res in enumerate(ranks):
        torch.testing.assert_close(res["cluster"][0], loss, rtol=0, atol=1e-5)
        torch.testing.assert_close(res["cluster"][1], grad[rows(r)], rtol=0, atol=1e-5)
        # without the all-reduce the gradient is exactly 1 / world_size of the true one
        torch.testing.assert_close(
            res["cluster_no_reduce"][1], grad[rows(r)] / WORLD, rtol=0, atol=1e-5
        )

    # a DDP-wrapped model trained on CC's total loss gets the single-process gradients
    model = fixed_model()
    loss = model_loss(model, data["x_a"], data["x_b"])
    loss.backward()
    torch.testing.assert_close(sum(res["model"][0] for res in ranks) / WORLD, loss.detach())
    for res in ranks:
        for got, expected in zip(res["model"][1], model.parameters(), strict=True):
            torch.testing.assert_close(got, expected.grad, rtol=0, atol=1e-5)

    # uneven batches: rank order, offsets, and the gradient summed over both ranks
    for r, res in enumerate(ranks):
        gathered, offset, grad = res["uneven"]
        torch.testing.assert_close(gathered, data["weights"][: sum(UNEVEN)])
        assert offset == sum(UNEVEN[:r])
        torch.testing.assert_close(grad, WORLD * data["weights"][offset : offset + UNEVEN[r]])

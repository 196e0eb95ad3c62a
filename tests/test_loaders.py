"""Batch sources: seeded epoch order, rank sharding, device-resident slicing."""

import numpy as np
import pytest
import torch

from cluster_ssl.data.base import TensorImageDataset
from cluster_ssl.engine.distributed import DistInfo
from cluster_ssl.engine.embed import embed
from cluster_ssl.engine.loaders import DeviceBatches, epoch_order


def toy(n=10):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return TensorImageDataset("toy", images, np.arange(n) % 3)


def test_epoch_order_is_seeded_per_epoch():
    one = DistInfo()
    a = epoch_order(20, shuffle=True, seed=1, epoch=0, dist=one, pad=True)
    assert torch.equal(a, epoch_order(20, shuffle=True, seed=1, epoch=0, dist=one, pad=True))
    assert not torch.equal(a, epoch_order(20, shuffle=True, seed=1, epoch=1, dist=one, pad=True))
    assert sorted(a.tolist()) == list(range(20))


def test_ranks_get_equal_disjoint_shards_covering_everything():
    shards = [
        epoch_order(11, shuffle=True, seed=0, epoch=2, dist=DistInfo(r, 3), pad=True)
        for r in range(3)
    ]
    assert {len(s) for s in shards} == {4}
    assert set(torch.cat(shards).tolist()) == set(range(11))
    unpadded = [
        epoch_order(11, shuffle=False, seed=0, epoch=0, dist=DistInfo(r, 3), pad=False)
        for r in range(3)
    ]
    assert sorted(torch.cat(unpadded).tolist()) == list(range(11))


def test_device_batches_carry_image_label_and_index():
    batches = DeviceBatches(
        toy(), 4, torch.device("cpu"), shuffle=True, drop_last=False, seed=0, dist=DistInfo()
    )
    seen = []
    for batch in batches:
        assert batch["image"].dtype == torch.uint8
        assert torch.equal(batch["image"][:, 0, 0, 0].long(), batch["index"])
        assert torch.equal(batch["label"], batch["index"] % 3)
        seen += batch["index"].tolist()
    assert len(batches) == 3 and sorted(seen) == list(range(10))


def test_drop_last_keeps_full_batches_only():
    batches = DeviceBatches(
        toy(), 4, torch.device("cpu"), shuffle=True, drop_last=True, seed=0, dist=DistInfo()
    )
    assert len(batches) == 2 and all(len(b["index"]) == 4 for b in batches)


def test_embed_returns_rows_in_dataset_order():
    out = embed(lambda b: b["image"].flatten(1).float(), toy(), torch.device("cpu"), batch_size=3)
    assert torch.equal(out[:, 0], torch.arange(10).float())


def test_a_method_order_is_followed_and_sharded():
    order = torch.tensor([3, 3, 3, 0, 1, 1, 9, 9, 2, 5])  # with repeats, as DeepCluster samples
    batches = DeviceBatches(
        toy(), 5, torch.device("cpu"), shuffle=True, drop_last=False, seed=0, dist=DistInfo()
    )
    batches.set_epoch(0, order)
    assert torch.cat([b["index"] for b in batches]).tolist() == order.tolist()
    shards = [
        epoch_order(10, shuffle=True, seed=0, epoch=0, dist=DistInfo(r, 2), pad=True, order=order)
        for r in range(2)
    ]
    assert sorted(torch.cat(shards).tolist()) == sorted(order.tolist())
    batches.set_epoch(1)  # back to the seeded shuffle
    assert sorted(torch.cat([b["index"] for b in batches]).tolist()) == list(range(10))


def test_an_order_of_the_wrong_length_is_refused():
    batches = DeviceBatches(
        toy(), 5, torch.device("cpu"), shuffle=True, drop_last=False, seed=0, dist=DistInfo()
    )
    with pytest.raises(ValueError, match="needs 10 indices, got 4"):
        batches.set_epoch(0, torch.arange(4))

"""Batch sources: seeded epoch order, rank sharding, device-resident slicing."""

import numpy as np
import pytest
import torch

from cluster_ssl.data.base import TensorImageDataset
from cluster_ssl.data.loaders import DeviceBatches, epoch_order
from cluster_ssl.methods.base import StageContext
from cluster_ssl.methods.embed import embed
from cluster_ssl.models.autoencoders import MLPAutoencoder
from cluster_ssl.models.backbones import build_backbone
from cluster_ssl.runtime.device import dataset_pass_batch_size
from cluster_ssl.runtime.distributed import DistInfo


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


def test_whole_dataset_passes_batch_by_device_and_network_with_the_same_rows():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    convolutional = build_backbone("resnet18", in_channels=1, stem="cifar", width=0.25)
    fully_connected = MLPAutoencoder(64)
    # 64 for convolutions on a CPU (activations stay in cache), else 512
    assert dataset_pass_batch_size(cpu, convolutional) == 64
    assert dataset_pass_batch_size(cpu, fully_connected) == 512
    assert dataset_pass_batch_size(cpu, None) == 512
    assert dataset_pass_batch_size(cuda, convolutional) == 512
    torch.manual_seed(0)
    images = torch.randint(0, 256, (150, 1, 8, 8), dtype=torch.uint8)
    dataset = TensorImageDataset("random", images, np.zeros(150, dtype=np.int64))
    network = convolutional.eval()
    sizes = []

    def features(batch):
        sizes.append(len(batch["index"]))
        return network(batch["image"].float() / 255)

    with torch.no_grad():
        whole = network(images.float() / 255)
        rows = StageContext(dataset, cpu, seed=0, num_workers=0, network=network).embed(features)
        assert sizes == [64, 64, 22]
        set_by_hand = StageContext(
            dataset, cpu, seed=0, num_workers=0, network=network, pass_batch_size=100
        ).embed(features)
        assert sizes[3:] == [100, 50]
    torch.testing.assert_close(rows, whole)
    torch.testing.assert_close(set_by_hand, whole)


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

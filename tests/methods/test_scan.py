"""SCAN: its two losses against the paper's formulas, neighbour mining on blobs, head
selection, both steps training, the whole three-stage recipe through the CLI (including a
resume that reuses the mined neighbours), and the clear errors."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cluster_ssl.cli import main
from cluster_ssl.cluster.neighbours import mine_neighbours, neighbour_accuracy
from cluster_ssl.commands.prepare import prepare
from cluster_ssl.losses.scan import confident_self_label_loss, neighbour_consistency, scan_loss
from cluster_ssl.methods import scan as scan_module
from cluster_ssl.methods.base import StageContext
from cluster_ssl.methods.scan import SCAN
from cluster_ssl.methods.selflabel import SelfLabel
from cluster_ssl.methods.step_average import StepAverage
from cluster_ssl.runtime.errors import UserError

CPU = torch.device("cpu")
# the digits CPU preset shrunk: the 359 test images at 8 px, small batches
TINY = {
    "split": "test",
    "eval_split": None,
    "image_size": 8,
    "batch_size": 64,
    "scan.batch_size": 64,
    "selflabel.batch_size": 64,
    "scan.num_neighbours": 5,
    "scan.num_heads": 3,
    "kmeans_restarts": 1,
}


def softmax_rows(logits):
    out = []
    for row in logits.tolist():
        exps = [math.exp(v) for v in row]
        out.append([e / sum(exps) for e in exps])
    return out


def dot(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_scan_loss_matches_the_paper_formula():
    torch.manual_seed(0)
    anchors, neighbours = torch.randn(6, 4), torch.randn(6, 4)
    loss, parts = scan_loss(anchors, neighbours, entropy_weight=5.0, gather=False)

    pa, pn = softmax_rows(anchors), softmax_rows(neighbours)
    consistency = -sum(math.log(dot(pa[i], pn[i])) for i in range(6)) / 6
    mean = [sum(row[c] for row in pa) / 6 for c in range(4)]
    entropy = -sum(m * math.log(m) for m in mean)
    assert parts["consistency"].item() == pytest.approx(consistency, rel=1e-5)
    assert parts["entropy"].item() == pytest.approx(entropy, rel=1e-5)
    assert loss.item() == pytest.approx(consistency - 5.0 * entropy, rel=1e-5)


def test_scan_loss_is_low_for_agreeing_balanced_pairs_and_clamps_disagreement():
    eye = torch.eye(4) * 30
    agree, _ = scan_loss(eye, eye, entropy_weight=1.0, gather=False)
    assert agree.item() == pytest.approx(-math.log(4), abs=1e-4)  # 0 consistency, max entropy
    disagree, parts = scan_loss(eye, eye.roll(1, dims=0), entropy_weight=0.0, gather=False)
    # as the public code's nn.BCELoss: the log of the agreement (2 e^-30 / (1 + 3 e^-30)),
    # not a 1e-8 clamp of it (which would give 18.4)
    assert parts["consistency"].item() == pytest.approx(30 - math.log(2), rel=1e-4)
    assert torch.isfinite(disagree)


def test_consistency_is_the_public_codes_bce_and_clamps_the_log_at_minus_100():
    agreement = torch.tensor([0.5, 1e-10, 1e-50, 0.0, 1.0], requires_grad=True)
    loss = neighbour_consistency(agreement)
    expected = F.binary_cross_entropy(agreement.detach(), torch.ones(5))
    assert loss.item() == pytest.approx(expected.item())
    assert loss.item() == pytest.approx((math.log(2) + 10 * math.log(10) + 100 + 100) / 5)
    loss.backward()
    assert torch.isfinite(agreement.grad).all()
    assert agreement.grad[1] < -1e8  # still pushed below 1e-8, where a clamp would stop


def test_self_label_loss_is_class_balanced_cross_entropy_on_confident_samples():
    weak = torch.tensor([[9.0, 0, 0], [9.0, 0, 0], [9.0, 0, 0], [0, 9.0, 0], [0, 0, 0.5]])
    torch.manual_seed(1)
    strong = torch.randn(5, 3)
    loss, confident = confident_self_label_loss(weak, strong, threshold=0.99)

    assert confident.tolist() == [True, True, True, True, False]
    targets = [0, 0, 0, 1]
    weight = {0: 4 / 3, 1: 4 / 1}  # |C| / |C_c|
    log_probs = F.log_softmax(strong, dim=1)
    numerator = sum(-weight[t] * log_probs[i, t].item() for i, t in enumerate(targets))
    expected = numerator / sum(weight[t] for t in targets)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_without_class_balancing_the_loss_is_the_plain_mean_over_confident_samples():
    weak = torch.tensor([[9.0, 0, 0], [9.0, 0, 0], [9.0, 0, 0], [0, 9.0, 0], [0, 0, 0.5]])
    strong = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    loss, _ = confident_self_label_loss(weak, strong, 0.99, class_balanced=False)
    log_probs = F.log_softmax(strong, dim=1)
    targets = [0, 0, 0, 1]
    expected = -sum(log_probs[i, t].item() for i, t in enumerate(targets)) / len(targets)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def scans_ema_steps(model, alpha, batches, lr):
    """SCAN's utils/ema.py as selflabel_train uses it, written out: a shadow copy of the
    state taken at the start; after each SGD step the shadow's parameters become
    alpha * shadow + (1 - alpha) * model, and the whole shadow is loaded into the model."""
    shadow = {k: v.clone() for k, v in model.state_dict().items()}
    parameter_names = [k for k, _ in model.named_parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for x in batches:
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
        state = model.state_dict()
        for name in parameter_names:
            shadow[name].copy_(alpha * shadow[name] + (1 - alpha) * state[name])
        model.load_state_dict(shadow)
    return model.state_dict()


def ours_steps(model, alpha, batches, lr):
    average = StepAverage([model], alpha)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for x in batches:
        average.before_step()
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
        average.after_step()
    return model.state_dict()


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.999])
def test_the_step_average_is_scans_ema_of_the_weights(alpha):
    def network():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).train()

    batches = [torch.randn(8, 4, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    start = network().state_dict()
    ours = ours_steps(network(), alpha, batches, lr=0.5)
    if alpha == 0:  # off: plain SGD, the running statistics move
        assert not torch.equal(ours["1.running_mean"], start["1.running_mean"])
        return
    scans = scans_ema_steps(network(), alpha, batches, lr=0.5)
    for key in scans:
        torch.testing.assert_close(ours[key], scans[key], rtol=1e-6, atol=1e-7)
    # the buffers stay as the stage started, the parameters moved
    assert torch.equal(ours["1.running_mean"], start["1.running_mean"])
    assert not torch.equal(ours["0.weight"], start["0.weight"])


def test_self_label_loss_reports_an_empty_confident_set():
    loss, confident = confident_self_label_loss(torch.zeros(4, 3), torch.randn(4, 3), 0.99)
    assert loss is None and not confident.any()


def test_mining_finds_neighbours_inside_each_blob():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 10
    labels = np.repeat(np.arange(4), 25)
    features = centres[labels] + rng.normal(size=(100, 16))
    neighbours = mine_neighbours(torch.from_numpy(features).float(), k=10)
    assert neighbours.shape == (100, 10)
    assert not (neighbours == torch.arange(100)[:, None]).any()  # never the sample itself
    assert neighbour_accuracy(neighbours, labels) == 1.0


def test_neighbour_accuracy_counts_agreeing_pairs():
    neighbours = torch.tensor([[1, 2], [0, 2], [0, 1]])
    assert neighbour_accuracy(neighbours, np.array([0, 0, 1])) == pytest.approx(2 / 6)
    assert neighbour_accuracy(neighbours, None) is None


def dotted(settings: dict) -> dict:
    """Keyword arguments as settings: ``selflabel__lr`` is ``selflabel.lr``."""
    return {key.replace("__", "."): value for key, value in settings.items()}


def stages(**overrides):
    prepared = prepare(
        {
            "recipe": "scan",
            "dataset": "digits",
            "data_root": None,
            "overrides": {**TINY, **dotted(overrides)},
        }
    )
    return [stage.method for stage in prepared.stages], prepared.dataset


def test_the_kept_head_has_the_lowest_heldout_loss():
    (_, clustering, _), dataset = stages()
    n, k = 8, 10
    torch.manual_seed(0)
    logits = torch.randn(n, 3 * k) * 3
    neighbours = torch.randint(n, (n, 4))
    clustering.neighbours = neighbours
    ctx = SimpleNamespace(heldout=None, dataset=dataset, embed=lambda fn, data: logits)
    clustering._select_head(ctx)

    expected = []
    for head in range(3):
        probs = softmax_rows(logits[:, head * k : (head + 1) * k])
        pairs = [  # each image with itself and its neighbours, as SCAN's top-(k+1) lists
            max(math.log(dot(probs[i], probs[j])), -100.0)
            for i in range(n)
            for j in [i, *neighbours[i].tolist()]
        ]
        mean = [sum(row[c] for row in probs) / n for c in range(k)]
        entropy = -sum(m * math.log(m) for m in mean)
        expected.append(-sum(pairs) / len(pairs) - entropy)
    assert clustering.heldout_losses == pytest.approx(expected, rel=1e-4)
    assert clustering.best_head == int(np.argmin(expected))
    assert clustering.best_loss == pytest.approx(min(expected), rel=1e-4)


def test_the_scan_presets_follow_scans_configs():
    from cluster_ssl.config import build_config
    from recipes import scan as recipe

    def config(preset):
        return build_config(recipe.SCANConfig, recipe.PRESETS[preset], {})

    for preset in ("cifar10", "cifar100-20", "stl10"):
        cfg = config(preset)
        assert cfg.scan.num_heads == 1 and cfg.strong_crop_padding == 0
        assert cfg.scan.include_anchor and cfg.scan.heldout_neighbours == 5
    assert config("stl10").selflabel.epochs == 100
    assert config("cifar10").selflabel.epochs == config("cifar100-20").selflabel.epochs == 200
    assert config("imagenet10").scan.num_heads == 10
    for preset in ("imagenet10", "imagenet-dogs"):  # selflabel_imagenet_50.yml
        cfg = config(preset)
        assert cfg.selflabel.class_balancing is False and cfg.selflabel.ema_alpha == 0.999
    assert (
        config("cifar10").selflabel.class_balancing and config("cifar10").selflabel.ema_alpha == 0
    )


def run_steps(method, ctx, steps, seed=0):
    torch.manual_seed(seed)
    optimizer = method.configure_optimizer()
    generator = torch.Generator().manual_seed(seed)
    losses = []
    method.eval()
    method.on_epoch_start(ctx)  # as the trainer does (SCAN draws the epoch's neighbours)
    method.train()
    for _ in range(steps):
        index = torch.randperm(len(ctx.dataset), generator=generator)[:64]
        batch = method.prepare_batch({"image": ctx.dataset.images[index], "index": index}, ctx)
        loss = method.training_step(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_each_epoch_pairs_every_anchor_with_one_neighbour_drawn_from_seed_and_epoch():
    """The draw depends on (seed, epoch) only, not on the batch or the process that asks,
    so 1 and N processes (and a resumed epoch) pair the same images."""
    (_, clustering, _), dataset = stages()
    n = len(dataset)
    clustering.neighbours = torch.stack([torch.randperm(n)[:5] for _ in range(n)])
    ctx = StageContext(dataset, CPU, seed=3, num_workers=0)

    def drawn(epoch):
        ctx.epoch = epoch
        clustering.on_epoch_start(ctx)
        return clustering.epoch_neighbour.clone()

    first = drawn(0)
    # from the k neighbours and the anchor itself (SCAN's top-(k+1) lists include it)
    assert all(first[i] in clustering.neighbours[i] or first[i] == i for i in range(n))
    itself = float((first == torch.arange(n)).float().mean())
    assert 0.05 < itself < 0.35  # about 1 in k + 1 = 6
    assert torch.equal(first, drawn(0))
    assert not torch.equal(first, drawn(1))
    index = torch.tensor([7, 2, 11])
    batch = clustering.prepare_batch({"image": dataset.images[index], "index": index}, ctx)
    torch.testing.assert_close(batch["neighbour_image"], dataset.images[drawn(1)[index]])


def test_without_include_anchor_the_neighbour_is_always_another_image():
    (_, clustering, _), dataset = stages(scan__include_anchor=False)
    n = len(dataset)
    clustering.neighbours = (
        torch.stack([torch.randperm(n - 1)[:5] + 1 + i for i in range(n)]) % n
    )  # never i itself
    clustering.on_epoch_start(StageContext(dataset, CPU, seed=3, num_workers=0))
    assert not bool((clustering.epoch_neighbour == torch.arange(n)).any())


def test_the_network_of_the_best_epoch_is_kept_and_self_labelling_starts_from_it():
    torch.manual_seed(0)
    (_, clustering, selflabel), dataset = stages(scan__lr=1e-3, selflabel__confidence_threshold=0.0)
    ctx = StageContext(dataset, CPU, seed=0, num_workers=0)
    clustering.eval()
    clustering.on_fit_start(ctx)
    run_steps(clustering, ctx, 5)
    clustering.on_epoch_end(ctx)  # the first epoch is always the best so far
    best = {key: value.clone() for key, value in clustering.backbone.state_dict().items()}
    best_heads = [head.weight.clone() for head in clustering.heads.heads]
    best_head, best_loss = clustering.best_head, clustering.best_loss
    assert clustering.best_state is not None and math.isfinite(best_loss)

    run_steps(clustering, ctx, 5, seed=1)
    clustering.best_loss = -math.inf  # the second epoch is worse: nothing new is kept
    clustering.on_epoch_end(ctx)
    assert clustering.best_head == best_head
    last = clustering.backbone.state_dict()
    assert any(not torch.equal(last[key], best[key]) for key in best)

    # the stage checkpoint (the method's state) holds the kept network
    fresh = stages()[0][1]
    fresh.load_state_dict(clustering.state_dict())
    for key, value in best.items():
        assert torch.equal(fresh.best_state["backbone"][key], value)

    selflabel.eval()
    selflabel.on_fit_start(ctx)  # restores the kept epoch, then copies its head
    for key, value in selflabel.backbone.state_dict().items():
        assert torch.equal(value, best[key]), key
    assert torch.equal(selflabel.head.weight, best_heads[best_head])
    for head, weight in zip(clustering.heads.heads, best_heads, strict=True):
        assert torch.equal(head.weight, weight)


def test_scan_step_mines_then_trains_and_its_loss_falls():
    torch.manual_seed(0)
    (_, clustering, _), dataset = stages(scan_lr=1e-3)
    ctx = StageContext(dataset, CPU, seed=0, num_workers=0)
    clustering.eval()
    clustering.on_fit_start(ctx)
    assert clustering.neighbours.shape == (len(dataset), 5)
    assert 0.1 < clustering.mining_accuracy <= 1.0
    losses = run_steps(clustering, ctx, 30)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1
    logs = clustering.on_epoch_end(ctx)
    assert logs["best_head"] == clustering.best_head and "neighbour_acc" in logs
    state = clustering.state_dict()
    fresh = stages()[0][1]
    fresh.load_state_dict(state)
    assert torch.equal(fresh.neighbours, clustering.neighbours)
    assert fresh.best_head == clustering.best_head


def test_self_labelling_starts_from_the_kept_head_and_its_loss_falls():
    torch.manual_seed(0)
    (_, clustering, selflabel), dataset = stages(
        selflabel__confidence_threshold=0.5, selflabel__lr=1e-3
    )
    ctx = StageContext(dataset, CPU, seed=0, num_workers=0)
    clustering.best_head = 2
    with torch.no_grad():  # a sharper head: some images pass the threshold
        clustering.heads.heads[2].weight.mul_(30)
    selflabel.eval()
    selflabel.on_fit_start(ctx)
    assert torch.equal(selflabel.head.weight, clustering.heads.heads[2].weight)
    assert 0 < selflabel.confident_fraction <= 1
    selflabel.on_epoch_start(ctx)
    losses = run_steps(selflabel, ctx, 30)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert selflabel.on_epoch_end(ctx)["confident_at_start"] == selflabel.confident_fraction


def test_self_labelling_stops_clearly_when_nothing_is_confident():
    (_, _, selflabel), dataset = stages(selflabel__confidence_threshold=0.99)
    with pytest.raises(
        UserError,
        match=r"no image passes the confidence threshold 0\.99.*"
        r"--set selflabel.confidence_threshold=",
    ):
        selflabel.on_fit_start(StageContext(dataset, CPU, seed=0, num_workers=0))


CLI = ["train", "scan", "--dataset", "digits", "--epochs", "1", "--no-progress"]


def cli_args(out, **settings):
    merged = {**TINY, "scan.epochs": 2, "selflabel.epochs": 1, "eval_every": 0, **dotted(settings)}
    sets = [item for key, value in merged.items() for item in ("--set", f"{key}={value}")]
    return [*CLI, "--out", str(out), *sets]


def test_the_three_stages_run_and_a_resume_reuses_the_mined_neighbours(tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = {"epochs": 0}
    original_end = SCAN.on_epoch_end

    def interrupted(self, ctx):
        calls["epochs"] += 1
        if calls["epochs"] == 2:  # after the scan stage checkpointed its first epoch
            raise KeyboardInterrupt
        return original_end(self, ctx)

    monkeypatch.setattr(SCAN, "on_epoch_end", interrupted)
    assert main(cli_args(out, selflabel__confidence_threshold=0.2)) == 130  # interrupted

    saved = torch.load(out / "stages" / "02-scan.pt", weights_only=False)
    assert saved["epoch"] == 1
    mined = saved["method"]["_extra_state"]["neighbours"]

    monkeypatch.setattr(SCAN, "on_epoch_end", original_end)

    def no_mining(*args, **kwargs):
        raise AssertionError("the neighbours were mined again on resume")

    monkeypatch.setattr(scan_module, "mine_neighbours", no_mining)
    assert main([*cli_args(out, selflabel__confidence_threshold=0.2), "--resume"]) == 0
    final = torch.load(out / "stages" / "02-scan.pt", weights_only=False)
    assert torch.equal(final["method"]["_extra_state"]["neighbours"], mined)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoint"].endswith("03-selflabel.pt")
    # the pretext stage finished in the first invocation: listed, not retrained
    assert [s["stage"] for s in summary["stages"]] == ["pretext", "scan", "selflabel"]
    pretext, scan, selflabel = summary["stages"]
    assert pretext["seconds"] == 0 and pretext["seconds_before_resume"] > 0
    assert scan["seconds_before_resume"] > 0 and "seconds_before_resume" not in selflabel
    assert summary["clusters_used"] >= 1 and 0 <= summary["acc"] <= 1


def test_the_trainer_averages_every_self_labelling_step(tmp_path, monkeypatch):
    steps = {"before": 0, "after": 0}
    original_before, original_after = StepAverage.before_step, StepAverage.after_step

    def counting(name, original):
        def wrapped(self):
            if self.alpha:
                steps[name] += 1
            return original(self)

        return wrapped

    monkeypatch.setattr(StepAverage, "before_step", counting("before", original_before))
    monkeypatch.setattr(StepAverage, "after_step", counting("after", original_after))
    out = tmp_path / "run"
    settings = {
        "selflabel.confidence_threshold": 0.2,
        "selflabel.ema_alpha": 0.9,
        "selflabel.class_balancing": "false",
    }
    assert main(cli_args(out, **settings)) == 0
    saved = torch.load(out / "stages" / "03-selflabel.pt", weights_only=False)
    assert steps["before"] == steps["after"] == saved["step"] > 0


def test_self_labelling_of_a_run_starts_from_the_scan_checkpoints_best_epoch(tmp_path, monkeypatch):
    out = tmp_path / "run"
    seen = {}
    original_start = SelfLabel.on_fit_start

    def recording_start(self, ctx):
        original_start(self, ctx)
        seen["backbone"] = {
            k: v.detach().cpu().clone() for k, v in self.backbone.state_dict().items()
        }
        seen["head"] = self.head.weight.detach().cpu().clone()

    monkeypatch.setattr(SelfLabel, "on_fit_start", recording_start)
    settings = {"scan.epochs": 3, "selflabel.confidence_threshold": 0.2}
    assert main(cli_args(out, **settings)) == 0
    saved = torch.load(out / "stages" / "02-scan.pt", weights_only=False)["method"]
    extra = saved["_extra_state"]
    assert extra["best_loss"] == min(extra["best_loss"], *extra["heldout_losses"])
    for key, value in extra["best_state"]["backbone"].items():
        assert torch.equal(seen["backbone"][key], value), key
    kept = extra["best_state"]["heads"][f"heads.{extra['best_head']}.weight"]
    assert torch.equal(seen["head"], kept)


def test_an_unconfident_clustering_step_stops_self_labelling_with_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(cli_args(out, selflabel__confidence_threshold=0.999)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: self-labelling: no image passes the confidence threshold")
    assert (out / "stages" / "02-scan.pt").exists()  # the finished steps are kept
    assert not (out / "stages" / "03-selflabel.pt").exists()
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("scan.num_neighbours=400", "scan.num_neighbours=400 needs more than that many images"),
        (
            "selflabel.confidence_threshold=1.5",
            "selflabel.confidence_threshold=1.5: must be below 1",
        ),
        ("scan.num_heads=0", "scan.num_heads=0: must be greater than 0"),
    ],
)
def test_bad_scan_settings_get_one_line(tmp_path, capsys, setting, message):
    key, value = setting.split("=")
    assert main(cli_args(tmp_path / "run", **{key: value})) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("error:")]) == 1
    assert message in err[-1]
    assert not list((tmp_path / "run").glob("stages/*.pt"))  # refused before the pretext


def test_overclustering_is_scored_by_majority_vote(tmp_path):
    out = tmp_path / "run"
    assert (
        main(cli_args(out, num_clusters=15, selflabel__confidence_threshold=0.0, scan__epochs=1))
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_clusters"] == 15 and len(summary["cluster_sizes"]) == 15
    assert summary["acc_overcluster"] >= summary["acc"]  # many-to-one never scores lower

"""The trainer's speed options on CPU: gradient accumulation takes the same steps as the full
batch, the batch is the effective one whatever the process count, channels_last and
torch.compile leave training and checkpoints as they were, and bf16 autocast trains."""

import copy
import json

import pytest
import torch

from cluster_ssl.cli import main
from cluster_ssl.commands.prepare import prepare
from cluster_ssl.engine.checkpoint import load_checkpoint
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.trainer import Trainer, TrainSettings, micro_batch
from cluster_ssl.methods.base import StageContext
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.state import load_state_strict

CPU = torch.device("cpu")
SMALL = {"split": "test", "eval_split": None, "kmeans_restarts": 1}


def build(recipe, **overrides):
    record = {"recipe": recipe, "dataset": "digits", "data_root": None}
    torch.manual_seed(0)
    prepared = prepare({**record, "overrides": {**SMALL, **overrides}})
    return prepared.stages[0], prepared.dataset


def fit(stage, dataset, tmp_path, world_size=1, log=False, **settings):
    tmp_path.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(
        TrainSettings(progress=False, log_every=1, **settings), RunLogger(tmp_path, enabled=log)
    )
    ctx = StageContext(dataset, CPU, seed=0, num_workers=0)
    trainer.fit(stage, ctx, tmp_path / "stage.pt", stage_index=0, resume=None, run_config={})
    return ctx.step


def parameters(method):
    return [p.detach().clone() for p in method.parameters()]


def logged_losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record["loss"] for record in map(json.loads, lines) if "loss" in record]


def test_accumulated_half_batches_take_the_full_batchs_steps(tmp_path):
    """DEC's autoencoder (no BatchNorm, a per-sample mean loss): two accumulated halves of
    every batch give the gradient of the whole batch, so the same weights after 2 epochs,
    and the logged loss is the mean over both halves, i.e. the whole batch's loss."""
    results = []
    for accumulate in (1, 2):
        stage, dataset = build("dec", epochs=2, batch_size=64, hidden_dims="32,32,64")
        run_dir = tmp_path / str(accumulate)
        steps = fit(stage, dataset, run_dir, log=True, accumulate=accumulate)
        results.append((steps, parameters(stage.method), logged_losses(run_dir)))
    (steps_full, full, losses_full), (steps_acc, accumulated, losses_acc) = results
    assert steps_full == steps_acc == 2 * (359 // 64) == len(losses_full) == len(losses_acc)
    for a, b in zip(full, accumulated, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        torch.tensor(losses_acc), torch.tensor(losses_full), rtol=1e-4, atol=0
    )


def test_the_batch_is_split_over_processes_and_accumulation_passes():
    stage, _ = build("dec", batch_size=64)
    assert micro_batch(stage, world_size=1, accumulate=1) == 64
    assert micro_batch(stage, world_size=2, accumulate=1) == 32
    assert micro_batch(stage, world_size=2, accumulate=4) == 8
    with pytest.raises(UserError, match="batch size 64 does not split evenly over 2 process"):
        micro_batch(stage, world_size=2, accumulate=3)


def test_channels_last_computes_the_same_gradients_and_trains(tmp_path):
    """The backbone under a well-conditioned (linear) loss in eval mode: NHWC and NCHW agree to
    float rounding. (A contrastive loss at initialisation, or BatchNorm's batch statistics,
    amplify the rounding differences of the two layouts too much to compare.)"""
    stage, dataset = build("simclr", epochs=1, batch_size=64, image_size=16)
    plain = stage.method.backbone
    nhwc = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    x, weights = torch.randn(64, 1, 16, 16), torch.randn(64, plain.feature_dim)
    for backbone in (plain, nhwc):
        (backbone.eval()(x) * weights).sum().backward()  # eval: no batch-statistics noise
    for a, b in zip(plain.parameters(), nhwc.parameters(), strict=True):
        assert (a.grad - b.grad).norm() <= 1e-4 * a.grad.norm()

    fit(stage, dataset, tmp_path, channels_last=True)
    conv = next(m for m in stage.method.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(p).all() for p in stage.method.parameters())


def test_compiled_backbone_trains_and_its_checkpoint_loads_into_a_plain_method(tmp_path):
    stage, dataset = build("simclr", epochs=1, batch_size=64, image_size=8)
    assert fit(stage, dataset, tmp_path, compile_backend="eager") == 359 // 64
    fresh, _ = build("simclr", image_size=8)
    load_state_strict(fresh.method, load_checkpoint(tmp_path / "stage.pt")["method"], "simclr")
    torch.testing.assert_close(
        parameters(fresh.method)[0], parameters(stage.method)[0], rtol=0, atol=0
    )


def test_bf16_autocast_on_the_cpu_trains(tmp_path):
    stage, dataset = build("simclr", epochs=2, batch_size=64, image_size=8)
    before = parameters(stage.method)
    fit(stage, dataset, tmp_path, precision=torch.bfloat16)
    after = parameters(stage.method)
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_whole_dataset_passes_run_at_the_training_precision_and_predictions_in_fp32(tmp_path):
    from cluster_ssl.commands.train import predict_method
    from cluster_ssl.runtime.distributed import DistInfo

    record = {"recipe": "dec", "dataset": "digits", "data_root": None}
    overrides = {**SMALL, "hidden_dims": "16,16,32", "maxiter": 6, "update_interval": 2}
    prepared = prepare({**record, "overrides": overrides})
    stage = prepared.stages[1]  # DEC's clustering: k-means on z, then Q every 2 steps
    passes = []

    def record_pass(module, args, output):
        if not torch.is_grad_enabled():  # a pass over the dataset, not a training step
            passes.append(output.dtype)

    encoder_input = next(m for m in stage.method.network().modules() if type(m) is torch.nn.Linear)
    encoder_input.register_forward_hook(record_pass)
    fit(stage, prepared.dataset, tmp_path, precision=torch.bfloat16)
    assert len(passes) >= 3 * (359 // 512 + 1) and set(passes) == {torch.bfloat16}
    passes.clear()
    prediction = predict_method(stage, prepared.dataset, CPU, DistInfo(), 0, training_data=True)
    assert passes and set(passes) == {torch.float32} and len(prediction.labels) == 359


def test_accumulate_is_recorded_and_checked_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    fast = ["--epochs", "1", "--set", "maxiter=4", "--set", "kmeans_restarts=1", "--no-progress"]
    assert main(["train", "dec", "--out", str(out), "--accumulate", "2", *fast]) == 0
    assert json.loads((out / "run.json").read_text())["accumulate"] == 2
    capsys.readouterr()
    assert main(["train", "dec", "--out", str(out), "--resume", "--accumulate", "4"]) == 2
    assert "cannot change accumulate" in capsys.readouterr().err
    assert main(["train", "dec", "--out", str(tmp_path / "x"), "--accumulate", "0"]) == 2
    assert "--accumulate must be at least 1, got 0" in capsys.readouterr().err
    # a run recorded before the option existed resumes, and still refuses a change
    record = json.loads((out / "run.json").read_text())
    del record["accumulate"]
    (out / "run.json").write_text(json.dumps(record))
    assert main(["train", "dec", "--out", str(out), "--resume", "--accumulate", "2"]) == 2
    assert "cannot change accumulate" in capsys.readouterr().err
    assert main(["train", "dec", "--out", str(out), "--resume", "--init-from", str(out)]) == 2
    assert "cannot change init_from" in capsys.readouterr().err


def test_every_stages_batch_split_is_checked_before_any_trains(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "dec", "--out", str(out), "--accumulate", "3", "--no-progress"]) == 2
    assert "batch size 256 does not split evenly over 1 process(es) x 3" in capsys.readouterr().err
    assert not list(out.glob("stages/*.pt")) and not (out / "run.json").exists()


def test_more_accumulation_passes_than_batches_is_refused(tmp_path):
    stage, dataset = build("dec", epochs=1, batch_size=256, hidden_dims="16,16,32")
    stage.batch_size = 512  # more than the data (the Trainer alone, which prepare refuses)
    with pytest.raises(UserError, match="--accumulate 8 needs that many batches an epoch"):
        fit(stage, dataset, tmp_path, accumulate=8)


@pytest.mark.parametrize("recipe", ["cc", "scan"])
def test_cluster_heads_give_fp32_probabilities_in_bf16_passes(recipe):
    """bf16 probabilities near 1 are 0.004 apart, too coarse for SCAN's 0.99 threshold."""
    overrides = {**SMALL, "image_size": 8, "scan.num_neighbours": 3} if recipe == "scan" else SMALL
    prepared = prepare(
        {"recipe": recipe, "dataset": "digits", "data_root": None, "overrides": overrides}
    )
    method = prepared.stages[-1].method.eval()
    ctx = StageContext(prepared.dataset, CPU, 0, num_workers=0, precision=torch.bfloat16)
    with torch.no_grad():
        if recipe == "scan":  # self-labelling's confidence at the start of its stage
            probabilities = ctx.embed(method.probabilities)
        else:
            probabilities = torch.from_numpy(method.predict(ctx).confidence)
    rounded = probabilities.bfloat16().float()
    assert (probabilities != rounded).float().mean() > 0.5  # not bf16 values

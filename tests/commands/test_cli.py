"""The `cluster-ssl` command end to end on digits, and every user-error path it has."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from cluster_ssl.cli import main
from cluster_ssl.report.confusion import confusion

FAST = [
    "--epochs",
    "2",
    "--set",
    "maxiter=30",
    "--set",
    "kmeans_restarts=2",
    "--set",
    "update_interval=5",
    "--no-progress",
]


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_then_eval_on_digits(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "train", "idec", "--dataset", "digits", "--out", str(out), *FAST)
    assert code == 0
    assert "ACC " in stdout and "NMI " in stdout and "ARI " in stdout
    summary = json.loads((out / "summary.json").read_text())
    for key in ("acc", "nmi", "ari", "clusters_used", "seconds", "recipe", "dataset", "seed"):
        assert key in summary
    assert summary["recipe"] == "idec" and summary["dataset"] == "digits"
    assert 0.0 < summary["acc"] <= 1.0 and summary["num_images"] == 1797
    assert sorted(p.name for p in (out / "stages").glob("*.pt")) == [
        "01-pretrain.pt",
        "02-cluster.pt",
    ]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {line["stage"] for line in lines} >= {"pretrain", "cluster", "final"}

    code, stdout, _ = run(capsys, "eval", str(out / "stages" / "02-cluster.pt"))
    assert code == 0
    assert "stage 'cluster'" in stdout and "02-cluster.pt" in stdout
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["acc"] == pytest.approx(summary["acc"])

    code, stdout, _ = run(capsys, "eval", str(out))  # a run directory works too
    assert code == 0 and "02-cluster.pt" in stdout

    code, stdout, _ = run(capsys, "eval", str(out), "--split", "test")  # another split
    assert code == 0 and "test split" in stdout
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["split"] == "test" and result["num_images"] == 359

    report = tmp_path / "report"
    code, stdout, _ = run(capsys, "eval", str(out), "--report", str(report))
    assert code == 0 and f"report: {report / 'report.html'}" in stdout
    page = (report / "report.html").read_text()
    assert "Clusters matched to classes" in page and "embedding.png" in page
    rows = (report / "assignments.csv").read_text().splitlines()
    assert len(rows) == 1 + 1797 and rows[1].startswith("digits[0],")
    predicted = np.array([int(row.split(",")[1]) for row in rows[1:]])
    table = confusion(load_digits().target, predicted, 10, None)
    assert table.counts.sum() == 1797 and sorted(table.clusters) == list(range(10))
    sizes = table.counts.sum(axis=1)
    assert np.average(table.per_class, weights=sizes) == pytest.approx(summary["acc"])

    code, _, stderr = run(capsys, "eval", str(out), "--split", "validation")
    assert code == 2 and stderr.startswith("error: --split validation: dataset 'digits' has no")


def test_list_names_recipes_and_datasets(capsys):
    code, stdout, _ = run(capsys, "list")
    assert code == 0
    for name in ("dec", "idec", "dcec", "digits", "fashion-mnist", "cifar10", "folder"):
        assert name in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "dec", "--dataset", "nope"], "unknown dataset 'nope'"),
        (["train", "nope"], "unknown recipe 'nope'"),
        (["train", "dec", "--set", "lrr=1"], "unknown setting 'lrr'"),
        (["train", "dec", "--set", "lr=fast"], "lr='fast': expected a finite number"),
        (["train", "dec", "--set", "lr=inf"], "lr='inf': expected a finite number"),
        (["train", "dec", "--out", "{tmp}/afile"], "--out {tmp}/afile is a file, not a directory"),
        (["train", "dec", "--set", "num_clusters=5000"], "num_clusters=5000 is larger than"),
        (["train", "dec", "--dataset", "cifar10", "--data-root", "{tmp}/missing"], "CIFAR-10"),
        (["train", "dec", "--epochs", "0"], "--epochs must be at least 1"),
        (["eval", "{tmp}/none.pt"], "checkpoint not found"),
        (["train", "dec", "--set", "batch_size=0"], "must be greater than 0"),
        (["train", "dec", "--set", "momentum=-1"], "must not be negative"),
        (["train", "dec", "--set", "optimizer=adamx"], "unknown optimizer 'adamx'"),
        (["train", "dec", "--set", "schedule=linear"], "unknown setting 'schedule'"),
        (["train", "simclr", "--set", "schedule=linear"], "unknown schedule 'linear'"),
        (["train", "idfd", "--set", "cluster_on=pixels"], "invalid settings for idfd"),
        (["train", "--resume"], "--resume needs --out"),
        (["train", "dec", "--set", "split=val"], "recipe's split asks for; --set split=..."),
        (
            ["train", "scan", "--dataset", "folder", "--data-root", "{tmp}/images"],
            "has no split 'test', which the scan recipe's eval_split asks for; --set eval_split",
        ),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    message = message.replace("{tmp}", str(tmp_path))
    (tmp_path / "afile").write_text("not a directory")
    (tmp_path / "images").mkdir()
    for i in range(3):
        Image.new("RGB", (12, 12), (90 * i, 0, 0)).save(tmp_path / "images" / f"{i}.png")
    if argv[0] == "train" and "--resume" not in argv and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    code, stdout, stderr = run(capsys, *argv)
    assert code == 2
    assert stderr.startswith("error: ") and message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not (tmp_path / "out" / "summary.json").exists()


def test_an_existing_run_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    code, _, stderr = run(capsys, "train", "dec", "--out", str(out), *FAST)
    assert code == 2 and "already holds a run" in stderr
    assert (out / "summary.json").read_text() == "{}"


def test_nan_loss_stops_with_a_clear_message_and_no_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, stderr = run(
        capsys,
        "train",
        "dec",
        "--out",
        str(out),
        "--set",
        "pretrain.lr=1e30",
        "--set",
        "pretrain.optimizer=sgd",
        *FAST,
    )
    assert code == 2
    assert "the loss became NaN or infinite" in stderr and "lower the learning rate" in stderr
    assert not list(out.glob("stages/*.pt")) and not (out / "summary.json").exists()


def test_default_out_dir_never_reuses_an_old_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "dec-digits").mkdir(parents=True)
    code, stdout, _ = run(capsys, "train", *FAST)
    assert code == 0 and "runs/dec-digits-2" in stdout


def test_an_unreadable_image_is_named(tmp_path, capsys):
    from tests.data_formats import write_image_folder

    write_image_folder(tmp_path / "images", broken=True)
    out = tmp_path / "out"
    code, _, stderr = run(
        capsys,
        "train",
        "dec",
        "--dataset",
        "folder",
        "--data-root",
        str(tmp_path / "images"),
        "--set",
        "num_clusters=2",
        "--set",
        "image_size=16",
        "--set",
        "batch_size=8",
        "--out",
        str(out),
        *FAST,
    )
    assert code == 2
    assert stderr.startswith("error: cannot read image ") and len(stderr.splitlines()) == 1
    assert not list(out.glob("stages/*.pt")) and not (out / "summary.json").exists()


def test_eval_finds_the_checkpoint_of_a_run_trained_elsewhere(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, _ = run(capsys, "train", "dec", "--out", "relative-run", *FAST)
    assert code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, stdout, _ = run(capsys, "eval", str(tmp_path / "relative-run"))
    assert code == 0 and "02-cluster.pt" in stdout


def test_a_relative_data_root_still_serves_eval_from_elsewhere(tmp_path, capsys, monkeypatch):
    from tests.data_formats import write_fashion_mnist

    write_fashion_mnist(tmp_path / "data", n_train=30, n_test=10)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "dec", "--dataset", "fashion-mnist", "--data-root", "data", "--out", "run"]
    argv += ["--set", "batch_size=16"]  # the 40 images written
    assert run(capsys, *argv, *FAST)[0] == 0
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["data_root"]
    assert recorded == str(tmp_path / "data")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, stdout, _ = run(capsys, "eval", str(tmp_path / "run"))
    assert code == 0 and "fashion-mnist" in stdout


def test_resume_keeps_the_settings_the_run_started_with(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(capsys, "train", "dec", "--out", str(out), *FAST)[0] == 0
    code, _, stderr = run(capsys, "train", "--out", str(out), "--resume", "--seed", "3")
    assert code == 2 and "cannot change seed" in stderr
    code, _, stderr = run(capsys, "train", "--out", str(out), "--resume", "--precision", "bf16")
    assert code == 2 and "cannot change precision" in stderr
    code, _, stderr = run(capsys, "train", "--out", str(out), "--resume", "--set", "lr=1")
    assert code == 2 and "cannot change lr (was the preset value, now 1)" in stderr
    code, _, stderr = run(capsys, "train", "--out", str(out), "--resume", "--set", "maxiter=31")
    assert code == 2 and "cannot change maxiter (was 30, now 31)" in stderr
    # the run's values, spelled otherwise: fp32 is what auto means on a CPU
    same = ("--set", "maxiter=030", "--epochs", "2", "--precision", "fp32", "--device", "cpu")
    code, stdout, _ = run(capsys, "train", "--out", str(out), "--resume", *same)
    assert code == 0 and "ACC " in stdout
    code, stdout, _ = run(capsys, "train", "--out", str(out), "--resume", "--no-progress")
    assert code == 0 and "ACC " in stdout  # nothing left to train: it scores the run again


def test_ctrl_c_says_whether_there_is_a_run_to_resume(tmp_path, capsys, monkeypatch):
    from cluster_ssl.commands import train as run_module
    from cluster_ssl.methods.dec import DEC

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    monkeypatch.setattr(run_module, "prepare", interrupt)  # before run.json is written
    code, _, stderr = run(capsys, "train", "dec", "--out", str(out), *FAST)
    assert code == 130 and stderr.strip() == "interrupted; nothing to resume was written"
    monkeypatch.undo()
    monkeypatch.setattr(DEC, "on_epoch_start", interrupt)  # the clustering stage
    code, _, stderr = run(capsys, "train", "dec", "--out", str(out), *FAST)
    assert code == 130 and "continue with the same command and --resume" in stderr
    assert (out / "stages" / "01-pretrain.pt").is_file()


def test_predict_after_train_reads_no_training_data_and_keeps_the_runs_clusters(
    tmp_path, capsys, monkeypatch
):
    import cluster_ssl.commands.prepare as run_module

    out = tmp_path / "run"
    argv = ["train", "simclr", "--dataset", "digits", "--out", str(out), "--epochs", "1"]
    assert run(capsys, *argv, "--no-progress")[0] == 0
    kept = out / "stages" / "01-simclr.centres.npy"
    assert np.load(kept).shape[0] == 10
    new = tmp_path / "new"
    new.mkdir()
    pixels = load_digits().images[:12] * 255 / 16
    for i, image in enumerate(pixels.round().astype(np.uint8)):
        Image.fromarray(image).save(new / f"{i:02d}.png")

    def rows(csv):
        return [line.split(",")[:2] for line in csv.read_text().splitlines()[1:]]

    with monkeypatch.context() as patched:
        patched.setattr(run_module, "load_split", lambda *a, **k: pytest.fail("read training data"))
        assert run(capsys, "predict", str(out), str(new), "--out", str(tmp_path / "a.csv"))[0] == 0
    np.save(kept, np.load(kept)[:7])  # centres of another k are not the run's clusters
    assert run(capsys, "predict", str(out), str(new), "--out", str(tmp_path / "b.csv"))[0] == 0
    kept.unlink()  # a run without kept centres finds them again on its training data
    assert run(capsys, "predict", str(out), str(new), "--out", str(tmp_path / "c.csv"))[0] == 0
    assert len(rows(tmp_path / "a.csv")) == 12
    assert rows(tmp_path / "a.csv") == rows(tmp_path / "b.csv") == rows(tmp_path / "c.csv")


def test_eval_download_fetches_missing_data_as_train_download_does(tmp_path, capsys, monkeypatch):
    from cluster_ssl.commands import prepare as run_module
    from tests.data_formats import write_fashion_mnist

    write_fashion_mnist(tmp_path / "data", n_train=30, n_test=10)
    argv = ["train", "dec", "--dataset", "fashion-mnist", "--data-root", str(tmp_path / "data")]
    argv += ["--set", "batch_size=16"]  # the 40 images written
    assert run(capsys, *argv, "--out", str(tmp_path / "run"), *FAST)[0] == 0
    asked = []
    real = run_module.build_dataset

    def recording(name, **options):
        asked.append(options["download"])
        return real(name, **options)

    monkeypatch.setattr(run_module, "build_dataset", recording)
    assert run(capsys, "eval", str(tmp_path / "run"), "--download")[0] == 0
    assert asked and all(asked)
    asked.clear()
    assert run(capsys, "eval", str(tmp_path / "run"))[0] == 0
    assert asked and not any(asked)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cluster", "/no/such/folder", "--k", "3", "--out", "o"], "does not exist"),
        (["cluster", ".", "--k", "0", "--out", "o"], "--k 0: give at least 2 clusters"),
        (["cluster", ".", "--k", "ten", "--out", "o"], "--k 'ten': give a number"),
        (["cluster", ".", "--k", "3", "--epochs", "0", "--out", "o"], "--epochs must be"),
    ],
)
def test_argument_errors_come_before_torch_is_loaded(argv, message):
    """Typos are answered at once: the command checks its arguments before it imports torch
    (which takes seconds to load)."""
    script = (
        "import sys; from cluster_ssl.cli import main; code = main(sys.argv[1:]); "
        "print(code, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True)
    assert done.stdout.split() == ["2", "False"] and message in done.stderr


def test_config_prints_the_settings_train_writes_to_config_json(tmp_path, capsys):
    sets = ["--set", "maxiter=30", "--set", "update_interval=5", "--set", "pretrain.lr=0.002"]
    out = tmp_path / "run"
    argv = ["train", "dec", "--dataset", "digits", "--out", str(out), "--no-progress"]
    assert main([*argv, "--epochs", "1", *sets]) == 0
    capsys.readouterr()
    assert main(["config", "dec", "--dataset", "digits", "--set", "epochs=1", *sets]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "config.json").read_text())
    assert printed["pretrain"]["lr"] == 0.002  # grouped by stage, as config.json
    assert main(["config", "dec", "--set", "pretrain_lr=1"]) == 2
    assert "this setting is now pretrain.lr" in capsys.readouterr().err

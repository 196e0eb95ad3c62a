"""``cluster-ssl cluster FOLDER``: a folder of images in assorted formats with known groups
(synthetic classes), plus broken and non-image files, clustered end to end; every output is
checked, and the grouping must beat chance by a wide margin."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cluster_ssl.cli import main
from cluster_ssl.data.synthetic import make_synthetic
from cluster_ssl.eval.metrics import cluster_accuracy

GROUPS = 3
PER_GROUP = 70
FORMATS = ("png", "jpg", "webp", "bmp", "tiff")


def write_group_folder(root: Path) -> dict[str, int]:
    """PER_GROUP synthetic images per group, cycling through formats and modes (RGB, grey,
    RGBA, palette, 16-bit), in nested folders; returns {relative path: group}."""
    images, labels = make_synthetic(GROUPS * PER_GROUP, GROUPS, size=24, channels=3, seed=3)
    truth = {}
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        picture = Image.fromarray(pixels.transpose(1, 2, 0))
        kind = FORMATS[i % len(FORMATS)]
        if i % 7 == 1:
            picture = picture.convert("L")
        elif i % 7 == 2 and kind in ("png", "webp", "tiff"):
            picture = picture.convert("RGBA")
        elif i % 7 == 3 and kind in ("png", "bmp"):
            picture = picture.convert("P")
        elif i % 7 == 4 and kind == "png":  # 16-bit grayscale
            grey = np.asarray(picture.convert("L"), dtype=np.uint16) * 257
            picture = Image.fromarray(grey)
        relative = Path(f"batch{i % 4}") / f"img{i:03d}.{kind}"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        picture.save(root / relative)
        truth[relative.as_posix()] = int(label)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    whole = (root / "batch0" / "img000.png").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[:40])
    (root / "notes.png").write_text("a text file with an image name\n")
    (root / "readme.txt").write_text("not an image, not listed\n")
    return truth


def write_few_images(folder: Path, count: int = 6) -> Path:
    """``count`` 8 px PNGs of different reds in ``folder`` (created), for the quick cases."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    truth = write_group_folder(root)
    out = tmp_path_factory.mktemp("report") / "out"
    argv = ["cluster", str(root), "--k", str(GROUPS), "--out", str(out), "--epochs", "15"]
    code = main([*argv, "--no-progress", "--workers", "0"])
    return code, root, out, truth


def test_the_run_succeeds_and_writes_every_output(clustered):
    code, _, out, _ = clustered
    assert code == 0
    for name in ("assignments.csv", "skipped.txt", "embedding.png", "report.html"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "folder" and summary["num_clusters"] == GROUPS
    assert Path(summary["checkpoint"]).name.endswith(".pt")


def test_every_readable_image_is_assigned_and_broken_files_are_listed(clustered):
    _, root, out, truth = clustered
    with (out / "assignments.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["path"] for row in rows) == sorted(truth)
    assert all(0 <= int(row["cluster"]) < GROUPS for row in rows)
    assert all(0.0 < float(row["confidence"]) <= 1.0 for row in rows)
    skipped = dict(line.split("\t") for line in (out / "skipped.txt").read_text().splitlines())
    assert set(skipped) == {"broken.png", "truncated.jpg", "notes.png"}
    assert all(reason.strip() for reason in skipped.values())


def test_the_grouping_beats_chance_by_a_wide_margin(clustered):
    _, _, out, truth = clustered
    with (out / "assignments.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    predicted = np.array([int(row["cluster"]) for row in rows])
    actual = np.array([truth[row["path"]] for row in rows])
    chance = max(
        cluster_accuracy(actual, np.random.default_rng(seed).permutation(predicted))
        for seed in range(20)
    )  # about 0.4 on 210 images in 3 groups
    assert cluster_accuracy(actual, predicted) >= max(0.6, chance + 0.2)


def test_grids_show_each_used_cluster_and_the_page_links_everything(clustered):
    _, _, out, _ = clustered
    with (out / "assignments.csv").open() as handle:
        used = {int(row["cluster"]) for row in csv.DictReader(handle)}
    grids = sorted(path.name for path in (out / "clusters").glob("*.png"))
    assert grids == [f"{cluster:02d}.png" for cluster in sorted(used)]
    with Image.open(out / "clusters" / grids[0]) as grid:
        assert min(grid.size) >= 48  # 24 px images enlarged to be seen
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    for link in [*(f"clusters/{name}" for name in grids), "embedding.png", "assignments.csv"]:
        assert f'"{link}"' in page and (out / link).is_file()
    assert "http://" not in page and "https://" not in page  # opens from disk, no server
    with Image.open(out / "embedding.png") as picture:
        assert picture.size == (800, 800)


def test_an_empty_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.png").write_text("not an image")
    code = main(["cluster", str(tmp_path / "empty"), "--k", "2", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: no readable images in") and "1 files could not" in err[0]


def test_more_clusters_than_images_is_a_clear_error(tmp_path, capsys):
    folder = write_few_images(tmp_path / "few", count=3)
    code = main(["cluster", str(folder), "--k", "5", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--k 5: need 2 <= k and k at most the 3 readable images" in err
    assert not (tmp_path / "o").exists()  # nothing written


def test_an_unknown_method_is_a_clear_error(tmp_path, capsys):
    code = main(
        ["cluster", str(tmp_path), "--k", "2", "--out", str(tmp_path / "o"), "--method", "x"]
    )
    assert (
        code == 2
        and "--method 'x' is not one of: cc, dcec, dec, deepcluster" in capsys.readouterr().err
    )


def read_assignments(path: Path, root: Path | None = None) -> dict[str, tuple[int, float]]:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    key = (lambda p: Path(p).relative_to(root).as_posix()) if root else (lambda p: p)
    return {key(row["path"]): (int(row["cluster"]), float(row["confidence"])) for row in rows}


def test_predict_assigns_new_images_to_the_learned_clusters(clustered, tmp_path, capsys):
    _, root, out, _ = clustered
    code = main(["predict", str(out), str(root), "--out", str(tmp_path / "p.csv")])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err.count("skipped ") == 3  # the broken files, each named once
    predicted = read_assignments(tmp_path / "p.csv", root)
    learned = read_assignments(out / "assignments.csv")
    assert predicted.keys() == learned.keys()
    assert all(predicted[p][0] == learned[p][0] for p in learned)  # same clusters
    assert all(predicted[p][1] == pytest.approx(learned[p][1], abs=1e-5) for p in learned)


def test_predict_with_a_kmeans_method_keeps_the_training_clusters(tmp_path, capsys):
    from sklearn.datasets import load_digits

    out = tmp_path / "run"
    settings = ["split=test", "eval_split=None", "image_size=8", "batch_size=64"]
    argv = ["train", "simclr", "--dataset", "digits", "--epochs", "1", "--no-progress"]
    assert main([*argv, "--out", str(out), *(f"--set={s}" for s in settings)]) == 0
    run_labels = read_assignments_from_summary(out)
    folder = tmp_path / "new"
    folder.mkdir()
    images = load_digits().images[-359:]  # the test split the run trained on
    for i in range(0, 359, 30):
        pixels = np.round(images[i] * 255.0 / 16.0).astype(np.uint8)  # as the dataset does
        Image.fromarray(pixels, "L").save(folder / f"{i:03d}.png")
    capsys.readouterr()
    assert main(["predict", str(out), str(folder), "--out", str(tmp_path / "p.csv")]) == 0
    predicted = read_assignments(tmp_path / "p.csv", folder)
    assert {name: label for name, (label, _) in predicted.items()} == {
        f"{i:03d}.png": int(run_labels[i]) for i in range(0, 359, 30)
    }


def test_predict_keeps_the_cluster_ids_of_a_folder_run_after_the_folder_changed(tmp_path):
    root = tmp_path / "photos"
    write_group_folder(root)
    out = tmp_path / "run"
    argv = ["cluster", str(root), "--k", str(GROUPS), "--out", str(out), "--method", "simclr"]
    assert main([*argv, "--epochs", "2", "--no-progress", "--workers", "0"]) == 0
    kept = list((out / "stages").glob("*.centres.npy"))
    assert len(kept) == 1 and np.load(kept[0]).shape[0] == GROUPS
    clustered = read_assignments(out / "assignments.csv")
    for name in sorted(clustered)[::3]:  # a third of the folder goes, so k-means would move
        (root / name).unlink()
    assert main(["predict", str(out), str(root), "--out", str(tmp_path / "p.csv")]) == 0
    predicted = read_assignments(tmp_path / "p.csv", root)
    assert predicted and all(predicted[name][0] == clustered[name][0] for name in predicted)
    moved = root.rename(tmp_path / "moved")  # the training folder is gone from its place
    assert main(["predict", str(out), str(moved), "--out", str(tmp_path / "m.csv")]) == 0
    assert read_assignments(tmp_path / "m.csv", moved) == predicted


def test_predict_reads_none_of_the_training_images(clustered, tmp_path, monkeypatch):
    import cluster_ssl.commands.prepare as run

    _, root, out, _ = clustered

    def no_training_data(*args, **kwargs):
        raise AssertionError("predict loaded the training data")

    monkeypatch.setattr(run, "load_split", no_training_data)
    new = tmp_path / "new"
    new.mkdir()
    learned = read_assignments(out / "assignments.csv")
    names = sorted(name for name in learned if name.endswith(".png"))[:5]
    for name in names:
        (new / Path(name).name).write_bytes((root / name).read_bytes())
    assert main(["predict", str(out), str(new), "--out", str(tmp_path / "p.csv")]) == 0
    predicted = read_assignments(tmp_path / "p.csv", new)
    assert predicted.keys() == {Path(name).name for name in names}
    for name in names:
        label, confidence = predicted[Path(name).name]
        assert label == learned[name][0] and confidence == pytest.approx(learned[name][1], abs=1e-5)


def read_assignments_from_summary(out: Path) -> np.ndarray:
    """The run's own k-means clustering of its training images, in dataset order."""
    from cluster_ssl.commands.trained import load_trained_stage
    from cluster_ssl.runtime.device import resolve_device

    return load_trained_stage(out).predict(resolve_device("cpu"), num_workers=0).labels


def test_predict_names_a_bad_input(clustered, tmp_path, capsys):
    _, _, out, _ = clustered
    (tmp_path / "notes.txt").write_text("text")
    code = main(["predict", str(out), str(tmp_path / "notes.txt"), "--out", str(tmp_path / "p")])
    assert code == 2 and "notes.txt is not an image file or a folder" in capsys.readouterr().err


def test_choose_k_finds_the_number_of_blobs():
    from cluster_ssl.cluster.choose_k import choose_k

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 5
    points = centres[rng.integers(0, 4, 400)] + rng.normal(size=(400, 8)) * 0.3
    best, scores = choose_k(points, range(2, 9))
    assert best == 4 and sorted(scores) == list(range(2, 9))
    assert scores[4] == max(scores.values()) and all(-1 <= s <= 1 for s in scores.values())


def test_k_auto_chooses_k_reports_the_scores_and_predict_uses_it(tmp_path, capsys):
    root = tmp_path / "photos"
    write_group_folder(root)
    out = tmp_path / "auto"
    argv = ["cluster", str(root), "--k", "auto", "--k-range", "2:5", "--out", str(out)]
    assert main([*argv, "--epochs", "3", "--no-progress", "--workers", "0"]) == 0
    stdout = capsys.readouterr().out
    selection = json.loads((out / "k_selection.json").read_text())
    assert sorted(map(int, selection["scores"])) == [2, 3, 4, 5]
    best = max(selection["scores"].items(), key=lambda item: (item[1], -int(item[0])))
    assert selection["k"] == int(best[0]) and f"chose k = {selection['k']}" in stdout
    assert "k  silhouette" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_clusters"] == selection["k"] == len(summary["cluster_sizes"])
    clusters = {label for label, _ in read_assignments(out / "assignments.csv").values()}
    assert clusters <= set(range(selection["k"]))
    page = (out / "report.html").read_text()
    assert "k chosen" in page and "Choosing k" in page  # the score curve of every k tried
    assert main(["predict", str(out), str(root), "--out", str(tmp_path / "p.csv")]) == 0
    predicted = read_assignments(tmp_path / "p.csv", root)
    assert {label for label, _ in predicted.values()} <= set(range(selection["k"]))


def test_k_auto_on_a_small_folder_tries_every_k_below_the_image_count(tmp_path, capsys):
    folder = write_few_images(tmp_path / "six")
    out = tmp_path / "o"
    argv = ["cluster", str(folder), "--k", "auto", "--out", str(out), "--epochs", "1"]
    assert main([*argv, "--no-progress", "--workers", "0"]) == 0
    scores = json.loads((out / "k_selection.json").read_text())["scores"]
    assert sorted(map(int, scores)) == [2, 3, 4, 5]  # a silhouette needs k < 6 images
    write_few_images(tmp_path / "two", count=2)
    capsys.readouterr()
    assert (
        main(["cluster", str(tmp_path / "two"), "--k", "auto", "--out", str(tmp_path / "t")]) == 2
    )
    assert "--k auto needs at least 3 readable images" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--k", "auto", "--method", "cc"], "--k auto needs a method that clusters"),
        (["--k", "auto", "--k-range", "2-5"], "--k-range '2-5': write it LOW:HIGH"),
        (["--k", "three"], "--k 'three': give a number of clusters or auto"),
        (["--k", "3", "--k-range", "2:5"], "--k-range goes with --k auto"),
        (["--k", "auto", "--k-range", "5:2"], "--k-range 5:2: LOW is above HIGH"),
        (["--k", "2", "--set", "num_clusters=5"], "with --k, not --set num_clusters"),
        (["--k", "auto", "--k-range", "2:6"], "need 2 <= k and k fewer than the 6 readable"),
    ],
)
def test_bad_k_options_get_one_line(tmp_path, capsys, options, message):
    folder = write_few_images(tmp_path / "few")
    assert main(["cluster", str(folder), "--out", str(tmp_path / "o"), *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_resume_of_a_finished_run_rewrites_the_same_outputs(clustered, capsys):
    _, root, out, _ = clustered
    before = (out / "assignments.csv").read_text()
    (out / "report.html").unlink()
    argv = ["cluster", str(root), "--k", str(GROUPS), "--out", str(out), "--resume"]
    assert main([*argv, "--no-progress", "--workers", "0"]) == 0
    assert "already finished" in capsys.readouterr().err
    assert (out / "assignments.csv").read_text() == before
    assert (out / "report.html").is_file()


def test_resume_refuses_other_settings_and_another_folder(clustered, capsys, tmp_path):
    _, root, out, _ = clustered
    argv = ["cluster", str(root), "--out", str(out), "--resume", "--no-progress"]
    assert main([*argv, "--k", str(GROUPS + 1)]) == 2
    err = capsys.readouterr().err
    assert f"cannot change num_clusters (was {GROUPS}, now {GROUPS + 1})" in err
    assert main([*argv, "--k", str(GROUPS), "--method", "simclr"]) == 2
    assert f"{out} is a cc run on folder, not simclr" in capsys.readouterr().err
    assert main([*argv, "--k", str(GROUPS), "--epochs", "3"]) == 2
    assert "cannot change epochs (was 15, now 3)" in capsys.readouterr().err
    other = tmp_path / "other"
    write_group_folder(other)
    assert main(["cluster", str(other), "--k", str(GROUPS), "--out", str(out), "--resume"]) == 2
    assert f"--resume: {out} clustered {root}, not {other}" in capsys.readouterr().err


def test_resume_from_another_directory_with_a_relative_folder(tmp_path, monkeypatch, capsys):
    write_few_images(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    argv = ["--k", "2", "--out", "run", "--epochs", "1", "--no-progress", "--workers", "0"]
    assert main(["cluster", "photos", *argv]) == 0
    before = (tmp_path / "run" / "assignments.csv").read_text()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    resumed = ["cluster", "../photos", "--k", "2", "--out", "../run", "--resume", "--no-progress"]
    assert main(resumed) == 0
    assert (tmp_path / "run" / "assignments.csv").read_text() == before


@pytest.mark.parametrize("method", ["dec", "dcec"])
def test_the_autoencoder_recipes_cluster_a_folder_too(tmp_path, method):
    root = tmp_path / "photos"
    write_group_folder(root)
    out = tmp_path / method
    argv = ["cluster", str(root), "--k", str(GROUPS), "--out", str(out), "--method", method]
    settings = ["--set", "maxiter=20", "--set", "kmeans_restarts=2"]
    assert main([*argv, "--epochs", "2", *settings, "--no-progress", "--workers", "0"]) == 0
    rows = read_assignments(out / "assignments.csv")
    assert len(rows) == GROUPS * PER_GROUP and (out / "report.html").is_file()
    assert json.loads((out / "run.json").read_text())["recipe"] == method


@pytest.mark.parametrize("method", ["pcl", "deepcluster"])
def test_pcl_and_deepcluster_are_sized_for_a_small_folder(tmp_path, method):
    root = tmp_path / "photos"
    write_group_folder(root)
    out = tmp_path / method
    argv = ["cluster", str(root), "--k", str(GROUPS), "--out", str(out), "--method", method]
    assert main([*argv, "--epochs", "2", "--no-progress", "--workers", "0"]) == 0
    assert len(read_assignments(out / "assignments.csv")) == GROUPS * PER_GROUP
    overrides = json.loads((out / "run.json").read_text())["overrides"]
    half = GROUPS * PER_GROUP // 2
    assert main([*argv, "--no-progress", "--workers", "0", "--resume"]) == 0  # same settings
    if method == "pcl":  # the paper's 4,096-key queue and 250-1,000 prototypes do not fit
        assert overrides["queue_size"] == min(4096, half)
        assert max(overrides["num_prototypes"]) <= half and overrides["warmup_epochs"] == 0
    else:  # nor do 100 pseudo-classes and a 256-d PCA of 128 features
        assert overrides["num_pseudo_classes"] <= GROUPS * PER_GROUP // 10
        assert overrides["pca_dim"] == 64


def test_a_pcl_pretext_of_scan_is_sized_for_the_folder_too(tmp_path, monkeypatch):
    import cluster_ssl.commands.folder.cluster as folder_clustering
    from cluster_ssl.commands.prepare import prepare

    requests = []

    def stop(request):
        requests.append(request)
        raise KeyboardInterrupt  # the settings are what this test checks, not training

    monkeypatch.setattr(folder_clustering, "train", stop)
    root = tmp_path / "photos"
    write_group_folder(root)
    argv = ["cluster", str(root), "--k", str(GROUPS), "--method", "scan", "--set", "pretext=pcl"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 130
    overrides = requests[0].overrides
    assert overrides["pretext.queue_size"] == GROUPS * PER_GROUP // 2
    record = {**requests[0].record(), "dataset_options": {"skip_unreadable": True}}
    pcl = prepare(record).stages[0].method  # the paper's queue of 4,096 would not fit
    assert pcl.queue.keys.shape[0] == GROUPS * PER_GROUP // 2
    assert max(pcl.num_prototypes) <= GROUPS * PER_GROUP // 2


def test_settings_follow_the_recipe_and_the_image_size():
    import torch

    from cluster_ssl.commands.folder.request import FolderRequest
    from cluster_ssl.commands.folder.sizing import method_settings

    request = FolderRequest(folder=Path("."), k=3, out=Path("o"), epochs=7)
    cpu = torch.device("cpu")
    cc = method_settings(request, "cc", 1000, 8, cpu)
    assert cc["image_size"] == 16 and cc["width"] == 0.25 and cc["crop_scale"] == 0.3
    assert cc["epochs"] == 7 and cc["batch_size"] == 250
    dec = method_settings(request, "dec", 1000, 8, cpu)
    assert dec["image_size"] == 16 and "width" not in dec and "crop_scale" not in dec
    assert method_settings(request, "dcec", 1000, 8, cpu)["image_size"] == 32  # 28 or 32 only
    assert method_settings(request, "cc", 50_000, 200, cpu)["image_size"] == 64


@pytest.mark.parametrize(
    ("images", "epochs"), [(300, 200), (1000, 200), (3000, 66), (10_000, 20), (50_000, 20)]
)
def test_the_default_length_is_about_200000_images_seen(images, epochs):
    """The rule chosen from tools/folder_length.py's curves (docs/RESULTS.md)."""
    from cluster_ssl.commands.folder.sizing import default_settings

    assert default_settings(images, 28, on_gpu=False)["epochs"] == epochs
    assert default_settings(images, 28, on_gpu=True)["epochs"] == epochs


def test_a_timm_backbone_clusters_a_folder(tmp_path):
    folder = write_few_images(tmp_path / "few")
    argv = ["cluster", str(folder), "--k", "2", "--out", str(tmp_path / "o")]
    options = ["--backbone", "timm:test_resnet", "--epochs", "1", "--workers", "0"]
    assert main([*argv, *options, "--no-progress"]) == 0  # no width or CIFAR stem forced on it
    overrides = json.loads((tmp_path / "o" / "run.json").read_text())["overrides"]
    assert overrides["backbone"] == "timm:test_resnet"
    assert "width" not in overrides and "stem" not in overrides


def test_backbone_options_do_not_apply_to_autoencoders(tmp_path, capsys):
    folder = write_few_images(tmp_path / "few")
    argv = ["cluster", str(folder), "--k", "2", "--out", str(tmp_path / "o"), "--method", "dec"]
    assert main([*argv, "--backbone", "resnet50"]) == 2
    assert "--backbone does not apply to dec" in capsys.readouterr().err


def test_an_output_folder_inside_the_image_folder_is_not_clustered(tmp_path, monkeypatch):
    root = write_few_images(tmp_path / "holiday")
    monkeypatch.chdir(root)
    argv = ["cluster", ".", "--k", "2", "--out", "runs/x", "--no-progress", "--workers", "0"]
    assert main([*argv, "--epochs", "1"]) == 0
    assert list((root / "runs" / "x" / "clusters").glob("*.png"))  # images it wrote itself
    assert main([*argv, "--resume"]) == 0
    assert len(read_assignments(root / "runs" / "x" / "assignments.csv")) == 6
    assert "<title>holiday: 2 clusters" in (root / "runs" / "x" / "report.html").read_text()

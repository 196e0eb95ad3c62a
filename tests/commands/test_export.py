"""``export_run``: a run's clusters as folders, a CSV or a FiftyOne directory tree, renamed
and merged as the report page's names file says; read back by each format's layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cluster_ssl.commands.export import export_run
from cluster_ssl.runtime.errors import UserError


@pytest.fixture
def run(tmp_path) -> Path:
    folder = tmp_path / "photos"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    rows = [("a/1.png", 1, 0.9), ("a/2.png", 0, 0.8), ("b/1.png", 1, 0.4), ("b/3.png", 2, 0.7)]
    for path, _, _ in rows:
        (folder / path).write_bytes(path.encode())
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"data_root": str(folder)}))
    lines = ["path,cluster,confidence"] + [f"{p},{c},{s:.6f}" for p, c, s in rows]
    (out / "assignments.csv").write_text("\n".join(lines) + "\n")
    (out / "names.json").write_text(json.dumps({"names": {"1": "shoes"}, "merge": [[2, 1]]}))
    return out


def test_folders_hold_links_to_every_image_under_its_cluster_name(run, tmp_path):
    target = export_run(run, tmp_path / "sorted", "folders", names=run / "names.json")
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*.png"))
    assert files == ["cluster_00/2.png", "shoes/1.png", "shoes/3.png", "shoes/b__1.png"]
    assert all((target / f).is_symlink() for f in files)
    assert (target / "cluster_00" / "2.png").read_bytes() == b"a/2.png"


def test_same_file_names_in_two_subfolders_are_both_kept_and_copies_are_files(run, tmp_path):
    target = export_run(run, tmp_path / "copies", "folders", copy=True, names=run / "names.json")
    shoes = sorted(p.name for p in (target / "shoes").iterdir())
    assert shoes == ["1.png", "3.png", "b__1.png"]
    assert not (target / "shoes" / "b__1.png").is_symlink()
    assert (target / "shoes" / "b__1.png").read_bytes() == b"b/1.png"


def test_csv_names_the_merged_clusters(run, tmp_path):
    target = export_run(run, tmp_path / "table", "csv", names=run / "names.json")
    with (target / "clusters.csv").open() as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    assert rows["b/3.png"]["cluster"] == "1" and rows["b/3.png"]["original_cluster"] == "2"
    assert {row["name"] for row in rows.values()} == {"cluster_00", "shoes"}
    assert rows["b/1.png"]["confidence"] == "0.400000"


def test_fiftyone_directory_tree_and_confidence_beside_it(run, tmp_path):
    target = export_run(run, tmp_path / "fo", "fiftyone")
    # ImageClassificationDirectoryTree: <dataset_dir>/<class>/<image>, only class folders
    assert all(entry.is_dir() for entry in target.iterdir())
    tree = {c.name: sorted(p.name for p in c.iterdir()) for c in target.iterdir()}
    assert tree == {
        "cluster_00": ["2.png"],
        "cluster_01": ["1.png", "b__1.png"],
        "cluster_02": ["3.png"],
    }
    sidecar = json.loads((tmp_path / "fo.confidence.json").read_text())
    assert sidecar["classes"] == ["cluster_00", "cluster_01", "cluster_02"]
    assert sidecar["labels"]["cluster_01/b__1.png"] == {"label": "cluster_01", "confidence": 0.4}


def test_mistakes_are_one_line_user_errors(run, tmp_path):
    with pytest.raises(UserError, match="holds no clustering"):
        export_run(tmp_path / "nothing")
    (tmp_path / "bad.json").write_text('{"names": {"x": 3}}')
    with pytest.raises(UserError, match="not of the form"):
        export_run(run, tmp_path / "o1", names=tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserError, match="not JSON"):
        export_run(run, tmp_path / "o2", names=tmp_path / "broken.json")
    with pytest.raises(UserError, match="cannot read names file"):
        export_run(run, tmp_path / "o3", names=tmp_path / "absent.json")
    with pytest.raises(UserError, match="unknown export format"):
        export_run(run, tmp_path / "o4", "zip")
    (run.parent / "photos" / "a" / "1.png").unlink()
    with pytest.raises(UserError, match="1 clustered files are gone"):
        export_run(run, tmp_path / "o5")


def test_the_command_line_exports_and_names_its_mistakes(run, tmp_path, capsys):
    from cluster_ssl.cli import main

    to = tmp_path / "csv"
    argv = ["export", str(run), "--to", str(to), "--format", "csv"]
    assert main([*argv, "--names", str(run / "names.json")]) == 0
    assert f"exported to {to}" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1

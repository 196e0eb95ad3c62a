"""tools/folder_length.py: the run ``cluster`` would train on a folder, longer and scored."""

from __future__ import annotations

import json

from tools.folder_length import folder_run_settings, measure


def test_the_measured_run_is_the_cluster_commands_run_made_longer(tmp_path, capsys):
    rows = measure(tmp_path, n=60, images_seen=240, evaluations=2, source="digits")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    settings = folder_run_settings(tmp_path / "data" / "images", tmp_path / "run", "cc")
    assert settings["epochs"] == 200  # the rule for 60 images: its 200-epoch ceiling
    assert run["recipe"] == "cc" and run["dataset"] == "folder"
    assert run["overrides"] == {**settings, "epochs": 4, "eval_every": 2}
    assert [row["epochs"] for row in rows] == [2, 4]
    assert [row["images_seen"] for row in rows] == [120, 240]
    assert all(0.0 < row["acc"] <= 1.0 and 0.0 <= row["nmi"] <= 1.0 for row in rows)
    assert not any(row["default"] for row in rows)  # the rule's 200 epochs were not reached
    printed = capsys.readouterr().out
    assert "60 images; the command's rule: 200 epochs (12000 seen)" in printed

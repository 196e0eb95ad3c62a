"""Claiming a run directory: a new run's record, or the stored one for ``--resume`` with
the checks that it continues unchanged."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from cluster_ssl.commands.record import RECORD_DEFAULTS, TRAINING_DATA, RunRequest, get_recipe
from cluster_ssl.config import overrides_in_current_names, parse_value
from cluster_ssl.engine.checkpoint import load_stage_checkpoint
from cluster_ssl.runtime.device import resolve_precision
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.files import read_json, write_error


def claim_out_dir(out: Path, request: RunRequest, device: torch.device) -> dict[str, Any]:
    """The run record: new for a fresh run, the stored one for ``--resume`` (which may
    repeat its settings, or spell them otherwise: ``--precision fp32`` for a CPU run
    recorded as ``auto``)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory; choose another --out")
    if request.resume:
        stored = stored_record(out)
        remove_debris(out)
        asked = request.given()
        for key in ("recipe", "dataset"):
            if asked.get(key, stored[key]) != stored[key]:
                raise UserError(
                    f"--resume: {out} is a {stored['recipe']} run on {stored['dataset']}, "
                    f"not {asked.get('recipe', stored['recipe'])} on "
                    f"{asked.get('dataset', stored['dataset'])}; use another --out"
                )
        # older runs lack keys; one recorded before --speed ran with today's defaults
        before = {**RECORD_DEFAULTS, "init_from": None, "speed": "off", **stored}

        def meaning(key: str, value: Any) -> Any:
            if key != "precision":
                return value
            try:
                return resolve_precision(value, device)
            except UserError:  # e.g. a CUDA fp16 run resumed on a CPU: compared as written
                return value

        changed = [
            f"{key} (was {before[key]}, now {value})"
            for key, value in asked.items()
            if key != "overrides" and meaning(key, value) != meaning(key, before[key])
        ]
        if "overrides" in asked:
            changed += changed_settings(stored["recipe"], before["overrides"], asked["overrides"])
        if changed:
            raise UserError(
                f"--resume continues {out} with the settings it started with; it cannot "
                f"change {'; '.join(changed)} (give the run's values or leave optional ones out, "
                "or start a new --out)"
            )
        if request.data_root is not None:  # the dataset moved: read it from its new place
            stored["data_root"] = request.data_root
        return stored
    if (out / "summary.json").exists() or any(out.glob("stages/*.pt")):
        raise UserError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    try:
        (out / "metrics.jsonl").unlink(missing_ok=True)  # of a run that never checkpointed
    except OSError as error:
        raise UserError(write_error(error, out / "metrics.jsonl")) from None
    return request.record()


def stored_record(out: Path) -> dict[str, Any]:
    """The record ``--resume`` continues: ``run.json``, or, when it is gone, the copy every
    stage checkpoint keeps (the run's record is written back from it)."""
    run_file = out / "run.json"
    if run_file.is_file():
        return read_json(
            run_file,
            ("recipe", "dataset"),
            "delete it and pass --resume again: it is rebuilt from the stage checkpoints",
        )
    checkpoints = sorted((out / "stages").glob("*.pt"))
    if not checkpoints:
        raise UserError(f"--resume: {out} holds no run (no run.json); start it without --resume")
    kept = load_stage_checkpoint(checkpoints[0])["run"]
    record = {key: value for key, value in kept.items() if key not in ("config", TRAINING_DATA)}
    print(f"{run_file} was missing; rebuilt from {checkpoints[0]}", file=sys.stderr)
    return record


def remove_debris(out: Path) -> None:
    """Delete the temporary files of writes a killed process left (``.NAME.tmp``)."""
    for folder in (out, out / "stages", out / "clusters"):
        for leftover in folder.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)


def changed_settings(recipe: str, before: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """The keys a resuming command sets to another value than the run has, with both
    values, compared as the recipe parses them (``.25`` is ``0.25``)."""
    config = get_recipe(recipe).config
    before = overrides_in_current_names(config, before)

    def parsed(key: str, value: Any) -> Any:
        if isinstance(value, list):  # a tuple setting as run.json stores it
            return tuple(value)
        kind = config.setting_type(key, {**before, **asked})
        if isinstance(value, str) and kind is not None:
            try:
                return parse_value(value, kind, key)
            except UserError:
                return value
        return value

    return [
        f"{key} (was {before.get(key, 'the preset value')}, now {value})"
        for key, value in asked.items()
        if parsed(key, before.get(key)) != parsed(key, value)
    ]

"""Claiming a run directory: a new run's record, or the stored one for ``--resume`` with
the checks that it continues unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cluster_ssl.commands.record import RECORD_DEFAULTS, RunRequest, get_recipe
from cluster_ssl.config import overrides_in_current_names, parse_value
from cluster_ssl.runtime.device import resolve_precision
from cluster_ssl.runtime.errors import UserError


def claim_out_dir(out: Path, request: RunRequest, device: torch.device) -> dict[str, Any]:
    """The run record: new for a fresh run, the stored one for ``--resume`` (which may
    repeat its settings, or spell them otherwise: ``--precision fp32`` for a CPU run
    recorded as ``auto``)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory; choose another --out")
    run_file = out / "run.json"
    if request.resume:
        if not run_file.is_file():
            raise UserError(
                f"--resume: {out} holds no run (no run.json); start it without --resume"
            )
        stored = json.loads(run_file.read_text())
        asked = request.given()
        for key in ("recipe", "dataset"):
            if asked.get(key, stored[key]) != stored[key]:
                raise UserError(
                    f"--resume: {out} is a {stored['recipe']} run on {stored['dataset']}, "
                    f"not {asked.get('recipe', stored['recipe'])} on "
                    f"{asked.get('dataset', stored['dataset'])}; use another --out"
                )
        before = {**RECORD_DEFAULTS, "init_from": None, **stored}  # older runs lack keys

        def meaning(key: str, value: Any) -> Any:
            if key != "precision":
                return value
            try:
                return resolve_precision(value, device)
            except UserError:  # e.g. a CUDA fp16 run resumed on a CPU: compared as written
                return value

        changed = [
            key
            for key, value in asked.items()
            if key != "overrides" and meaning(key, value) != meaning(key, before[key])
        ]
        if "overrides" in asked:
            changed += changed_settings(stored["recipe"], before["overrides"], asked["overrides"])
        if changed:
            raise UserError(
                f"--resume continues {out} with the settings it started with; it cannot "
                f"change {', '.join(changed)} (drop those options, or start a new --out)"
            )
        if request.data_root is not None:  # the dataset moved: read it from its new place
            stored["data_root"] = request.data_root
        return stored
    if (out / "summary.json").exists() or any(out.glob("stages/*.pt")):
        raise UserError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    (out / "metrics.jsonl").unlink(missing_ok=True)  # left by a run that never checkpointed
    return request.record()


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

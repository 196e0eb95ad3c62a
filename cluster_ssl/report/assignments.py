"""``assignments.csv``: one row per image read, with its cluster and confidence."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cluster_ssl.runtime.files import write_bytes


def write_assignments(
    path: Path, names: Sequence[str], labels: np.ndarray, confidence: np.ndarray | None
) -> None:
    """Columns ``path, cluster, confidence`` (empty confidence for methods without one).

    UTF-8; a file name that is not valid UTF-8 is written as its raw bytes, as the file
    system holds it (Python's ``surrogateescape``), so the row still names the file."""
    if len(names) != len(labels):
        raise ValueError(f"{len(names)} names but {len(labels)} labels")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "cluster", "confidence"])
    for i, name in enumerate(names):
        score = "" if confidence is None else f"{float(confidence[i]):.6f}"
        writer.writerow([str(name), int(labels[i]), score])
    write_bytes(buffer.getvalue().encode(errors="surrogateescape"), path)


def write_skipped(path: Path, skipped: Sequence[tuple[Path, str]], root: Path) -> None:
    """``skipped.txt``: one ``path<TAB>reason`` line per file left out."""
    lines = [f"{Path(file).relative_to(root).as_posix()}\t{reason}\n" for file, reason in skipped]
    write_bytes("".join(lines).encode(errors="surrogateescape"), path)

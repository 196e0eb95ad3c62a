"""``cluster-ssl export RUN``: a clustering run's images sorted by cluster, renamed and merged
as the report page's names file says, as folders, a CSV or a FiftyOne dataset.

Formats (``--to DIR``, default ``RUN/export-<format>``):

* ``folders``: ``DIR/<cluster name>/<file>``, symlinks to the clustered files (copies with
  ``copy=True``).
* ``csv``: ``DIR/clusters.csv`` with ``path, cluster, name, confidence, original_cluster``
  (``cluster`` is the cluster after merging: the smallest number of its group).
* ``fiftyone``: FiftyOne's ``fo.types.ImageClassificationDirectoryTree``: one subfolder per
  class holding its images (load with ``fo.Dataset.from_dir(DIR,
  fo.types.ImageClassificationDirectoryTree)``). That type has no place for confidence, so it
  goes beside the tree, in ``DIR.confidence.json`` (``{"classes": [...], "labels":
  {"<class>/<file>": {"label": <class>, "confidence": <c>}}}``, the label entries of
  FiftyOne's ``FiftyOneImageClassificationDataset`` labels.json), not inside it where the
  importer would read it as an image.

Names file (what the page's "save names & merges" downloads)::

    {"names": {"3": "shoes"}, "merge": [[1, 4]]}

A merged group takes the name of its first named member, else ``cluster_<smallest>``;
unnamed clusters are ``cluster_NN``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from cluster_ssl.runtime.errors import UserError

FORMATS = ("folders", "csv", "fiftyone")


def read_names(path: str | Path | None) -> dict[str, Any]:
    """The names file, checked: ``names`` maps cluster numbers to strings, ``merge`` is a
    list of lists of cluster numbers."""
    if path is None:
        return {"names": {}, "merge": []}
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(f"cannot read names file {path}: {error.strerror or error}") from None
    except ValueError:
        raise UserError(f"names file {path} is not JSON; save it again from report.html") from None
    names, merge = (
        (data.get("names", {}), data.get("merge", [])) if isinstance(data, dict) else (None, None)
    )
    good = (
        isinstance(names, dict)
        and all(re.fullmatch(r"\d+", str(k)) and isinstance(v, str) for k, v in names.items())
        and isinstance(merge, list)
        and all(
            isinstance(g, list) and all(isinstance(c, int) and c >= 0 for c in g) for g in merge
        )
    )
    if not good:
        raise UserError(
            f'names file {path} is not of the form {{"names": {{"3": "shoes"}}, "merge": '
            "[[1, 4]]}; save it again from report.html"
        )
    return {"names": {int(k): v.strip() for k, v in names.items() if v.strip()}, "merge": merge}


def cluster_labels(clusters: set[int], names: dict[str, Any]) -> dict[int, tuple[int, str]]:
    """Each cluster's (cluster after merging, its name)."""
    parent = {c: c for c in clusters}
    for group in names["merge"]:
        for c in group:
            parent.setdefault(c, c)

    def root(c: int) -> int:
        while parent[c] != c:
            c = parent[c]
        return c

    for group in names["merge"]:
        for c in group[1:]:
            a, b = root(group[0]), root(c)
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for c in sorted(parent):
        groups.setdefault(root(c), []).append(c)
    result = {}
    for head, group in groups.items():
        named = [names["names"][c] for c in group if c in names["names"]]
        label = safe_name(named[0]) if named else f"cluster_{head:02d}"
        for c in group:
            result[c] = (head, label)
    return result


def safe_name(name: str) -> str:
    """A folder name: no path separators or control characters, not hidden."""
    cleaned = re.sub(r"[\\/\x00-\x1f:*?\"<>|]+", "_", name).strip().lstrip(".")
    return cleaned or "unnamed"


def read_run(run_dir: Path) -> tuple[list[dict[str, str]], Path]:
    """The rows of ``assignments.csv`` and the clustered folder (run.json's data_root)."""
    assignments = run_dir / "assignments.csv"
    if not run_dir.is_dir() or not assignments.is_file():
        raise UserError(
            f"{run_dir} holds no clustering (no assignments.csv); give the --out folder of "
            "`cluster-ssl cluster`"
        )
    try:
        record = json.loads((run_dir / "run.json").read_text())
        root = record["data_root"]
    except (OSError, ValueError, KeyError, TypeError):
        root = None
    if not root:
        raise UserError(f"{run_dir}/run.json does not name the clustered folder (data_root)")
    with assignments.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"path", "cluster", "confidence"} <= set(rows[0]):
        raise UserError(f"{assignments} lacks the columns path, cluster, confidence")
    return rows, Path(root)


def export_run(
    run_dir: str | Path,
    to: str | Path | None = None,
    fmt: str = "folders",
    copy: bool = False,
    names: str | Path | None = None,
) -> Path:
    """Write the run's clusters in ``fmt`` to ``to``; returns where. See the module doc."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    rows, root = read_run(run_dir)
    naming = read_names(names)
    labels = cluster_labels({int(row["cluster"]) for row in rows}, naming)
    target = Path(to) if to is not None else run_dir / f"export-{fmt}"
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target} is not empty; choose another --to or empty it")
    target.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        with (target / "clusters.csv").open(
            "w", encoding="utf-8", errors="surrogateescape", newline=""
        ) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["path", "cluster", "name", "confidence", "original_cluster"])
            for row in rows:
                head, label = labels[int(row["cluster"])]
                writer.writerow([row["path"], head, label, row["confidence"], row["cluster"]])
        return target
    missing = [row["path"] for row in rows if not (root / row["path"]).is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} clustered files are gone from {root} (first: {missing[0]}); "
            "put the folder back where it was clustered"
        )
    placed: dict[tuple[str, str], int] = {}
    confidence: dict[str, dict[str, Any]] = {}
    for row in rows:
        _, label = labels[int(row["cluster"])]
        relative = Path(row["path"])
        name = relative.name
        if (label, name) in placed:  # same file name in two subfolders: keep both
            name = "__".join(relative.parts)
        placed[(label, name)] = 1
        destination = target / label / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        source = (root / relative).resolve()
        if copy:
            shutil.copy2(source, destination)
        else:
            os.symlink(source, destination)
        if row["confidence"]:
            confidence[f"{label}/{name}"] = {"label": label, "confidence": float(row["confidence"])}
    if fmt == "fiftyone":
        classes = sorted({label for _, label in labels.values()})
        sidecar = target.parent / f"{target.name}.confidence.json"
        sidecar.write_text(json.dumps({"classes": classes, "labels": confidence}, indent=1))
    return target

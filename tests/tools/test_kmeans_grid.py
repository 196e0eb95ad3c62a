"""`tools/kmeans_backends.py --grid`: ours against scikit-learn per size, at equal work."""

from __future__ import annotations

from cluster_ssl.cluster.backend import SKLEARN_ANY_CLUSTERS_BELOW
from tools.kmeans_backends import main


def table(out: str, header: str) -> list[list[str]]:
    """The rows after ``header`` (a markdown table), split into cells."""
    lines = out.split(header, 1)[1].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_grid_times_every_size_with_its_inertia_and_ratio(capsys) -> None:
    big = SKLEARN_ANY_CLUSTERS_BELOW  # sklearn at k = 3, faiss at k = 150
    main(
        [
            *("--grid", "--grid-n", f"300,{big}", "--grid-k", "3,150", "--dim", "4"),
            *("--iterations", "4", "--repeats", "2", "--big-n", str(big)),
            *("--big-iterations", "2", "--big-repeats", "1", "--n-init", "2"),
            *("--knn-k", "3", "--grid-knn-max-n", "300", "--grid-knn-repeats", "1"),
        ]
    )
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("command: ")
    assert "--grid --grid-n" in out.splitlines()[0]
    rows = table(out, "| n | k | iterations x repeats |")
    assert [(row[0], row[1], row[2], row[3]) for row in rows] == [
        ("300", "3", "4 x 2", "faiss"),
        ("300", "150", "4 x 2", "faiss"),
        (f"{big:,}", "3", "2 x 1", "sklearn"),
        (f"{big:,}", "150", "2 x 1", "faiss"),
    ]
    for row in rows:
        ours, reference = float(row[7].replace(",", "")), float(row[8].replace(",", ""))
        if row[1] == "3":  # same start, same Lloyd steps, no empty cluster: same objective
            assert abs(ours - reference) <= 1e-3 * reference
        assert float(row[9].rstrip("x")) > 0 and float(row[10].rstrip("x")) > 0
        assert (row[5] == "(ours)") == (row[3] == "faiss")
    # where auto chose scikit-learn's kernel, faiss is timed beside it
    assert "| faiss |" in out.split(f"{big:,} x 4, k = 3")[1].split("##")[0]
    knn_rows = table(out, "| n | ours (backend) | ours (s) |")
    assert [row[:2] for row in knn_rows] == [["300", "faiss"]]
    assert knn_rows[0][4] == "100.00%"
    assert f"kNN at n = {big:,} skipped" in out

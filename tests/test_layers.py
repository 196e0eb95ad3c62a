"""The house's layers: imports run downward (pyproject's import-linter contract) and no
module imports itself back through others."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

REPO = Path(__file__).resolve().parents[1]


def test_imports_run_downward_through_the_layers(monkeypatch):
    monkeypatch.chdir(REPO)  # the contract lives in pyproject.toml
    assert lint_imports(no_cache=True) == 0


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_back():
    graph = grimp.build_graph("cluster_ssl", "recipes")
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    assert _cycles(graph) == []
    graph.add_import(importer="c", imported="a")
    assert _cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", ["cluster_ssl.runtime"])
def test_the_bottom_layer_imports_nothing_of_ours(package):
    graph = grimp.build_graph("cluster_ssl", "recipes")
    for module in graph.find_descendants(package):
        imported = graph.find_modules_directly_imported_by(module)
        assert {name for name in imported if not name.startswith(package)} == set(), module


def test_the_drawn_import_graph_is_current():
    from tools.import_graph import mermaid, package_edges

    assert (REPO / "docs" / "IMPORTS.md").read_text() == mermaid(package_edges()), (
        "run: python tools/import_graph.py > docs/IMPORTS.md"
    )


def test_the_package_imports_without_kornia_faiss_and_wandb():
    """The GPU machine has none of them: they are loaded where they are used."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "for name in ('kornia', 'faiss', 'wandb'): sys.modules[name] = None\n"
        "import recipes, cluster_ssl.estimators, cluster_ssl.commands.train, cluster_ssl.cli\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

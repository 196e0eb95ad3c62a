"""Draw the package-level import graph of cluster_ssl and recipes as a Mermaid diagram.

    python tools/import_graph.py > docs/IMPORTS.md

Each arrow is "imports from"; the layers of pyproject.toml's import-linter contract run top
to bottom, so every arrow points down the page. tests/test_layers.py checks that the file is
current.
"""

from __future__ import annotations

import grimp

#: the packages drawn, and the one-file modules drawn as their own boxes
ROOTS = ("cluster_ssl", "recipes")


def node(module: str) -> str:
    """The box a module is drawn in: ``cluster_ssl.X`` for the package's subpackages and
    top modules, ``recipes`` for the recipes."""
    parts = module.split(".")
    if parts[0] == "recipes":
        return "recipes"
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def package_edges() -> set[tuple[str, str]]:
    graph = grimp.build_graph(*ROOTS)
    edges = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = node(module), node(imported)
            if a != b and "cluster_ssl" not in (a, b):  # the package root re-exports lazily
                edges.add((a, b))
    return edges


def mermaid(edges: set[tuple[str, str]]) -> str:
    lines = [
        "# The import graph",
        "",
        "Made by `python tools/import_graph.py > docs/IMPORTS.md`. An arrow is *imports "
        "from*; every arrow points down the layers (`pyproject.toml`), none back up, and no "
        "module imports itself back (`tests/test_layers.py`).",
        "",
        "```mermaid",
        "flowchart TD",
    ]
    names = sorted({name for edge in edges for name in edge})
    ids = {name: name.replace("cluster_ssl.", "").replace(".", "_") for name in names}
    lines += [f'    {ids[name]}["{name}"]' for name in names]
    lines += [f"    {ids[a]} --> {ids[b]}" for a, b in sorted(edges)]
    lines.append("```")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(mermaid(package_edges()), end="")

"""``python recipes/NAME.py ARGS`` runs ``cluster-ssl train NAME ARGS``.

The recipe scripts sit below the command line in the layers, so they do not import it:
the process becomes the command (same arguments, exit code and signals).
"""

from __future__ import annotations

import os
import sys


def run_as_train_command(recipe: str, argv: list[str] | None = None) -> None:
    """Replace this process with ``python -m cluster_ssl train RECIPE ARGS``."""
    args = sys.argv[1:] if argv is None else argv
    os.execv(sys.executable, [sys.executable, "-m", "cluster_ssl", "train", recipe, *args])

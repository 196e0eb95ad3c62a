#!/usr/bin/env bash
# The GPU check on a lent machine: kornia from local wheels (the machine has no network),
# then tools/gpu_check.py. Usage: bash tools/gpu_check.sh [OUT_DIR] [gpu_check.py options]
# (docs/GPU_CHECK.md).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
if ! python -c "import kornia" 2>/dev/null; then
    if compgen -G "$repo/tools/wheels/kornia-*.whl" >/dev/null; then
        python -m pip install --quiet --no-index --find-links "$repo/tools/wheels" kornia
    else
        echo "gpu_check.sh: kornia is not installed and tools/wheels/ holds no kornia wheel;" \
            "the recipes cannot import without it (docs/GPU_CHECK.md)" >&2
    fi
fi
python "$repo/tools/gpu_check.py" "${1:-gpu-check-out}" "${@:2}"

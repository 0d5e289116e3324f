#!/usr/bin/env bash
# The whole GPU measurement in one command, from a source tree on a machine with a CUDA device
# and PyTorch but without citab's own dependencies: installs the carried wheels (`make
# gpu-wheels` puts them in .gpu-wheels/) into .gpu-site/, then runs benchmarks/gpu_suite.py.
# Results go to $OUT/gpu_suite.json (default gpu-out/); extra arguments go to the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
if [ -d .gpu-wheels ]; then
    python -m pip install --quiet --no-index --find-links .gpu-wheels --target .gpu-site pydantic
    export PYTHONPATH="$PWD/.gpu-site${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" || true
python benchmarks/gpu_suite.py --out "$OUT/gpu_suite.json" "$@"

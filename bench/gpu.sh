#!/usr/bin/env bash
# The GPU checks, as one script for a lent CUDA machine (no network there): GPU tests, then the
# inference and training-step benchmarks. Missing Python packages travel as wheels in .whl/
# (speechbrain, hyperpyyaml, ruamel.yaml, soundfile, cffi, pycparser for Python 3.12).
# Usage: bash bench/gpu.sh [OUTDIR]
set -uo pipefail
out=${1:-${OUT:-/tmp/gpu-out}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, torchaudio; print('torch', torch.__version__, 'torchaudio', torchaudio.__version__)" | tee -a "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/tests.txt"
python3 bench/forward.py --device cuda --batch 16 --seconds 10 --repeats 10 --warmup 3 --models w12,h12 2>&1 | tee "$out/forward.txt"
python3 bench/train_step.py --device cuda --batch 32 --seconds 12.5 --steps 10 --warmup 3 --models w12,h12 2>&1 | tee "$out/train_step.txt"

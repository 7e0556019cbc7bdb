#!/usr/bin/env bash
# Every GPU check of one device lease, as one script sized for about 8 minutes on one H100/H200: the `gpu` tests,
# the training-step table (parent all trainable / conv frozen / L2D joint, eager and compiled, L2D-W12 and L2D-H12
# at 32 x 12.5 s, bf16) with `learn2diss pretrain joint` end to end, the inference table, a frame-level and an
# utterance-level s3prl smoke run through run_downstream.py, and `learn2diss demo --quick`. Each step has its own
# time limit, so one that overruns cannot eat the lease, and writes its output under OUTDIR (summary.md lists them).
#
#   bash bench/gpu.sh wheels                         # before the lease, with the package registry: .whl/
#   bash bench/gpu.sh corpus                         # before the lease: .demo/ (the reduced demo's corpus)
#   bash bench/gpu.sh [OUTDIR]                       # on the device (carry .whl and .demo): install, every check
#   bash bench/gpu.sh --device cpu --tiny [OUTDIR]   # dry run of every check on the CPU with tiny shapes
#
# The device image has Python 3.12 with torch/torchaudio 2.11, numpy, scipy, pandas, scikit-learn, matplotlib and
# tensorboard, but transformers 5 and huggingface_hub 1.x (s3prl's runner needs < 5 and < 1.0) and none of
# speechbrain, s3prl, faiss, soundfile. `wheels` downloads the pinned version (constraints.txt) of each package it
# lacks as a cp312 wheel (an sdist-only one is built here with python3.12, $PYTHON312); `corpus` builds the reduced
# demo's corpus (it needs the Debian speech synthesisers, which the device lacks). On the device they are installed the way
# `make install` installs: pip with the constraints of the carried packages, -e ".[superb,eval]", into a venv over
# the image's packages, offline from .whl/.
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda
TINY=0
MODE=run
while [ $# -gt 0 ]; do
    case $1 in
        wheels|corpus) MODE=$1 ;;
        --device) DEVICE=$2; shift ;;
        --tiny) TINY=1 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) OUTDIR=$1 ;;
    esac
    shift
done

# the packages the device image lacks (or has at a version s3prl's runner cannot use), with what they need
CARRIED="audioread braceexpand cffi decorator editdistance espnet-s3prl faiss-cpu flashlight-text huggingface-hub
hyperpyyaml jiwer kenlm-ex kneed librosa omegaconf platformdirs pooch pycparser rapidfuzz ruamel.yaml ruamel.yaml.clib
soundfile sox soxr speechbrain submitit tensorboardX tokenizers transformers webdataset zerospeech-libriabx2"

if [ $MODE = wheels ]; then
    set -e
    grep -qx "/.whl/" .git/info/exclude || printf '/.whl/\n/.demo/\n' >> .git/info/exclude
    mkdir -p .whl
    # the versions `make install` resolved here (constraints.txt for the direct dependencies)
    .venv/bin/python -c "import importlib.metadata as m, sys; print(*(f'{n}=={m.version(n)}' for n in sys.argv[1:]), sep='\n')" \
        $CARRIED > .whl/pins.txt
    for pin in $(cat .whl/pins.txt); do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
            --platform any -d .whl "$pin" 2>/dev/null \
        || "${PYTHON312:-python3.12}" -m pip wheel -q --no-deps -w .whl "$pin"  # sdist only: built here
    done
    du -sh .whl
    exit 0
fi
if [ $MODE = corpus ]; then  # the reduced demo's corpus and manifest: the device runs every later stage
    set -e
    grep -qx "/.demo/" .git/info/exclude || printf '/.whl/\n/.demo/\n' >> .git/info/exclude
    rm -rf .demo && .venv/bin/learn2diss demo --quick --work-dir .demo/runs --out .demo/results >/dev/null
    rm -rf .demo/results .demo/runs/runs .demo/runs/checkpoints .demo/runs/features
    find .demo/runs/stages -name '*.json' ! -name 'corpus.json' -delete
    du -sh .demo
    exit 0
fi

OUTDIR=${OUTDIR:-${OUT:-/tmp/gpu-out}}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1
summary="$OUTDIR/summary.md"
: > "$summary"

# the limits are sized for the device; a CPU dry run (a shared, slower machine) gets LIMIT_SCALE times each
[ "$DEVICE" = cuda ] && SCALE=1 || SCALE=${LIMIT_SCALE:-10}
step() {  # step NAME SECONDS COMMAND...: run with a time limit, output to NAME.txt, a line in summary.md
    local name=$1 limit=$(($2 * SCALE)); shift 2
    local start=$SECONDS
    echo "== $name: $*" | tee -a "$OUTDIR/$name.txt"
    timeout "$limit" "$@" >> "$OUTDIR/$name.txt" 2>&1
    local rc=$?
    echo "| $name | exit $rc$([ $rc = 124 ] && echo ' (time limit)') | $((SECONDS - start)) s |" | tee -a "$summary"
    tail -n 25 "$OUTDIR/$name.txt"
}

if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUTDIR/env.txt" 2>&1
    python3 -m venv --system-site-packages /tmp/l2d-venv
    PY=/tmp/l2d-venv/bin/python
    step install 60 $PY -m pip install --no-index --find-links .whl --no-build-isolation -c .whl/pins.txt \
        -e ".[superb,eval]"
    export PATH=/tmp/l2d-venv/bin:$PATH
else
    PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
    echo "install: skipped on $DEVICE (the current environment: $PY)" | tee -a "$summary"
fi
$PY -c "import torch, torchaudio; print('torch', torch.__version__, 'torchaudio', torchaudio.__version__)" \
    | tee -a "$OUTDIR/env.txt"

if [ $TINY = 1 ]; then
    CONFIGS=(tiny)
    TRAIN=(--batch 2 --seconds 2 --steps 2 --warmup 1)
    E2E=(--utterances 12 --utterance-seconds 3)
    FORWARD=(--models learn2diss/configs/tiny.yaml --batch 2 --seconds 2 --repeats 2 --warmup 1)
    SMOKE=(--tiny)
else
    CONFIGS=(l2d_w12 l2d_h12)
    TRAIN=(--batch 32 --seconds 12.5 --steps 10 --warmup 3)
    E2E=(--set frame_targets.fit_max_frames=20000 --set frame_targets.kmeans_iterations=2 --set utt_simclr.steps=2
         --set "utt_targets.cluster_counts=[2,3,4]" --set data.num_workers=4 --utterances 64 --joint-steps 20)
    FORWARD=(--models w12,h12 --batch 16 --seconds 10 --repeats 10 --warmup 3)
    SMOKE=(--config l2d_w12)
fi

step tests 45 $PY -m pytest -q -p no:cacheprovider -m gpu -rs tests
for config in "${CONFIGS[@]}"; do  # one step each, so that a slow compilation of one leaves the other's rows
    step "train_step_$config" 120 $PY bench/train_step.py --device "$DEVICE" --compile default --configs "$config" \
        "${TRAIN[@]}"
done
step end_to_end 45 $PY bench/train_step.py --device "$DEVICE" --compile default --configs "${CONFIGS[0]}" \
    --end-to-end "${E2E[@]}"
step forward 25 $PY bench/forward.py --device "$DEVICE" "${FORWARD[@]}"
step superb_smoke 40 $PY bench/superb_smoke.py --device "$DEVICE" --out "$OUTDIR/superb" "${SMOKE[@]}"
rm -rf "$OUTDIR/superb/data" "$OUTDIR/superb/checkpoint" "$OUTDIR/superb/runs"
if [ -d .demo/runs ]; then
    rm -rf /tmp/l2d-demo && cp -r .demo/runs /tmp/l2d-demo
    step demo 60 $PY -m learn2diss.cli demo --quick --device "$DEVICE" --work-dir /tmp/l2d-demo \
        --out "$OUTDIR/demo"
    rm -rf "$OUTDIR/demo/cells" "$OUTDIR/demo/figures"
else
    echo "| demo | skipped: no .demo/runs (bash bench/gpu.sh corpus builds it) | |" | tee -a "$summary"
fi
cat "$summary"

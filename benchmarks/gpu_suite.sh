#!/usr/bin/env bash
# The GPU benchmarks in one prepared run (about 9 minutes; installs nothing, needs no network).
#
#   bash benchmarks/gpu_suite.sh                 # from the repository root, on a CUDA machine
#   OUT=/tmp/gpu_run bash benchmarks/gpu_suite.sh
#
# Steps, each under its own time limit (a step stopped by its limit keeps the rows it already wrote):
#   1. gram kernel target cases      benchmarks/gram_kernel.py --shapes 256x1024x384,64x4096x384,64x196x384
#   2. gram N x N vs d x d crossover benchmarks/gram_kernel.py --crossover   (re-measures NXN_MAX_RATIO)
#   3. train step at paper shapes    benchmarks/train_step.py --paper-shapes --compile --bf16
#   4. reader feeding the GPU        benchmarks/data_pipeline.py --feed-gpu
# A step whose script lacks one of its flags (see its --help) is skipped with a message. Every CSV row
# carries the device name, torch/triton versions and the git commit. CI never runs this.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-benchmarks/results}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# Seconds per step: 270 + 60 + 120 + 60, 8.5 minutes at most (plus a few seconds of --help checks).
GRAM_LIMIT=270
CROSSOVER_LIMIT=60
TRAIN_LIMIT=120
DATA_LIMIT=60

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_suite: torch sees no CUDA device; this suite is for a GPU machine (on a CPU run the scripts" \
         "one by one, see docs/benchmarks.md)." >&2
    exit 2
fi
"$PY" -c 'import torch, triton; print(f"gpu_suite: {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")'

SUMMARY=()
FAILED=0

# supports SCRIPT FLAG...: every FLAG appears as an option in SCRIPT's --help.
supports() {
    local script=$1 help flag
    shift
    help=$("$PY" "$script" --help 2>&1) || return 1
    for flag in "$@"; do
        grep -qE -- "(^|[[:space:],[])${flag}([][:space:],=]|$)" <<<"$help" || return 1
    done
}

# step NAME LIMIT COMMAND...: run COMMAND under `timeout LIMIT`, record how it ended.
step() {
    local name=$1 limit=$2 rc=0 t0=$SECONDS
    shift 2
    echo
    echo "== $name (limit ${limit}s): $*"
    timeout --kill-after=15 "$limit" "$@" || rc=$?
    if [[ $rc -eq 0 ]]; then
        SUMMARY+=("$name: done in $((SECONDS - t0))s")
    elif [[ $rc -eq 124 || $rc -eq 137 ]]; then
        SUMMARY+=("$name: stopped at its ${limit}s limit (the rows written before are kept)")
    else
        SUMMARY+=("$name: FAILED (exit $rc)")
        FAILED=1
    fi
}

skip() {
    echo
    echo "== $1: skipped - $2"
    SUMMARY+=("$1: skipped ($2)")
}

step "gram kernel targets" "$GRAM_LIMIT" "$PY" benchmarks/gram_kernel.py \
    --shapes 256x1024x384,64x4096x384,64x196x384 --dtypes bfloat16,float32 --out "$OUT/gram_kernel.csv"
step "gram crossover" "$CROSSOVER_LIMIT" "$PY" benchmarks/gram_kernel.py --crossover \
    --out "$OUT/gram_kernel_crossover.csv"

if supports benchmarks/train_step.py --paper-shapes --compile --bf16; then
    csv=()
    if supports benchmarks/train_step.py --csv; then csv=(--csv "$OUT/train_step.csv"); fi
    step "train step" "$TRAIN_LIMIT" "$PY" benchmarks/train_step.py --paper-shapes --compile --bf16 "${csv[@]}"
else
    skip "train step" "benchmarks/train_step.py --help lists no --paper-shapes/--compile/--bf16 yet"
fi

if supports benchmarks/data_pipeline.py --feed-gpu; then
    csv=()
    if supports benchmarks/data_pipeline.py --csv; then csv=(--csv "$OUT/data_pipeline.csv"); fi
    step "data pipeline" "$DATA_LIMIT" "$PY" benchmarks/data_pipeline.py --feed-gpu "${csv[@]}"
else
    skip "data pipeline" "benchmarks/data_pipeline.py --help lists no --feed-gpu yet"
fi

echo
echo "== gpu_suite summary"
printf '   %s\n' "${SUMMARY[@]}"
echo "CSVs (rows appended; each carries device, versions and commit):"
for f in "$OUT"/gram_kernel.csv "$OUT"/gram_kernel_crossover.csv "$OUT"/train_step.csv "$OUT"/data_pipeline.csv \
         benchmarks/results/train_step.csv benchmarks/results/data_pipeline.csv; do
    if [[ -f $f ]]; then echo "   $f"; fi
done | sort -u
exit "$FAILED"

#!/usr/bin/env bash
# The GPU check (`make gpu-check`): on a machine with CUDA, within about 8 minutes,
#   1. the tests marked `cuda` (tests/test_cuda.py: sampling, an update, a checkpoint round trip CUDA -> CPU,
#      the same update on CPU and CUDA agreeing within float tolerance);
#   2. `sorl-lab bench --size paper` on CUDA (seconds per iteration, GFLOP/s, sampling latency), and 4 seeds
#      trained as one stack against one seed (`--seeds 4`) at lab and paper size;
#   3. a 5,000-iteration paper-size cube-single training with one evaluation (generating the dataset first
#      with every core if it is missing).
# It prints every figure and never runs in CI. Without a GPU it says so and exits 0.
#
# Knobs: GPU_CHECK_OUT (run folder, default runs/gpu-check), GPU_CHECK_DATA (dataset folder, default
# ~/.ogbench/data), GPU_CHECK_ITERATIONS (default 5000), GPU_CHECK_EPISODES (evaluation episodes, default 10).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
OUT="${GPU_CHECK_OUT:-runs/gpu-check}"
DATA="${GPU_CHECK_DATA:-$HOME/.ogbench/data}"
ITERATIONS="${GPU_CHECK_ITERATIONS:-5000}"
EPISODES="${GPU_CHECK_EPISODES:-10}"
ENV=cube-single-play-singletask-task2-v0

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu-check: no CUDA device visible to PyTorch here ($("$PY" -c 'import torch; print("torch", torch.__version__, "built for CUDA", torch.version.cuda)')); nothing to check."
    exit 0
fi
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }
started=$SECONDS
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "device", torch.cuda.get_device_name(0))'

step "1/3 tests marked cuda"
"$PY" -m pytest tests/test_cuda.py -m cuda -q -p no:cacheprovider

step "2/3 sorl-lab bench on CUDA: paper size, then 4 seeds as one stack at lab and paper size"
.venv/bin/sorl-lab bench --size paper --device cuda --iterations 20
.venv/bin/sorl-lab bench --size lab --seeds 4 --device cuda --iterations 10
.venv/bin/sorl-lab bench --size paper --seeds 4 --device cuda --iterations 10

step "3/3 paper-size training, $ITERATIONS iterations, one evaluation of $EPISODES episodes"
t=$SECONDS
.venv/bin/sorl-lab data generate cube-single-play-v0 --dataset-dir "$DATA" --workers "$(nproc)" --no-progress
echo "dataset ready in $((SECONDS - t)) s"
t=$SECONDS
rm -rf "$OUT"
.venv/bin/sorl-lab train --env "$ENV" --iterations "$ITERATIONS" --eval-every "$ITERATIONS" \
    --eval-episodes "$EPISODES" --eval-workers "$(( $(nproc) < 8 ? $(nproc) : 8 ))" --agent.size paper \
    --agent.device cuda --dataset-dir "$DATA" --out "$OUT" --no-progress
secs=$((SECONDS - t))
"$PY" - "$OUT" "$ITERATIONS" "$secs" <<'PYEOF'
import csv, sys
out, iterations, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print(f"training + evaluation: {secs} s for {iterations} iterations ({secs / iterations * 1e3:.1f} ms per iteration, evaluation included)")
for row in csv.DictReader(open(f"{out}/eval.csv")):
    print(f"step {row['step']}  M_inf {row['m_inf']}  success {float(row['success_rate']):.0%} of {row['episodes']}  mean return {row['mean_return']}")
PYEOF
echo
echo "gpu-check: done in $((SECONDS - started)) s"

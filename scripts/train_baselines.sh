#!/usr/bin/env bash
# The baselines of docs/ALGORITHM.md §9 (flow-bc, ifql, fql) on cube-single task 2 with the bundled SORL policies'
# recipe (same dataset, lab-size networks, learning rate 3e-4, 80,000 iterations, seeds 0, 1, 2), trained on a
# 2-core machine in two lanes of one thread each, resumably, across as many sittings as they need; each finished run
# is bundled with its 50-episode sweep (scripts/build_ogbench_assets.py) as
# assets/ogbench/cube-single-task2-<method>[-s<seed>].
#
#   bash scripts/train_baselines.sh [--minutes M] [JOB ...]   # JOB: <method>-s<seed>, e.g. fql-s0 (default: all nine)
#
# Jobs go, in the order given, to the lane with less work queued (fql about 60 min, ifql 43, flow-bc 10 at two
# lanes' speed; a bundled job costs nothing and is skipped). At --minutes the trainings in progress stop (SIGTERM:
# a checkpoint is written) and each unfinished run is archived to assets/training/cube-single-<job>.tar (checkpoint
# with optimizer and noise state, logs), replaced each sitting: commit it to carry the run to the next sitting,
# which restores it and resumes. Logs: runs/baselines/*.log; progress: runs/baselines/status.
# Measured here, two lanes side by side: flow-bc 4 ms, ifql 28 ms, fql 35-45 ms per iteration.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ENV_NAME=cube-single-play-singletask-task2-v0
DATA="${SORL_DATA_DIR:-data/ogbench}"
RUNS=runs/baselines
ARCHIVE="${BASELINE_ARCHIVE:-assets/training}"
ITERATIONS="${BASELINE_ITERATIONS:-80000}"
MINUTES=100000
if [[ "${1:-}" == "--minutes" ]]; then MINUTES=$2; shift 2; fi
deadline=$((SECONDS + MINUTES * 60))
mkdir -p "$RUNS" "$ARCHIVE"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
jobs_wanted=("$@")
((${#jobs_wanted[@]})) || jobs_wanted=(flow-bc-s0 fql-s0 ifql-s0 flow-bc-s1 flow-bc-s2 ifql-s1 ifql-s2 fql-s1 fql-s2)
declare -A COST=([flow-bc]=10 [ifql]=43 [fql]=60)

log() { echo "$(date +%T) $*" | tee -a "$RUNS/status"; }

name_of() {  # fql-s0 -> cube-single-task2-fql (seed 0 carries no suffix, as the SORL policies)
    local method=${1%-s*} seed=${1##*-s}
    if [[ $seed == 0 ]]; then echo "cube-single-task2-$method"; else echo "cube-single-task2-$method-s$seed"; fi
}

archive() {  # one file per unfinished run, replaced each sitting
    local job=$1 tar="$ARCHIVE/cube-single-$1.tar"
    [[ -f "$RUNS/$job/checkpoint.pt" ]] || return 0
    tar -cf "$tar.tmp" -C "$RUNS/$job" checkpoint.pt config.json metrics.csv eval.csv && mv "$tar.tmp" "$tar" \
        && log "$job: archived to $tar ($(du -h "$tar" | cut -f1)); commit it to resume next sitting"
}

run_job() {
    local job=$1 method=${1%-s*} seed=${1##*-s} out="$RUNS/$1" resume=() name left rc
    name=$(name_of "$job")
    [[ -f "assets/ogbench/$name/policy.pt" ]] && { log "$job: already bundled as $name"; return 0; }
    # A training of this run still going (an earlier invocation of this script): wait for it, then resume.
    while pgrep -f -- "--out $out " >/dev/null; do sleep 30; done
    if [[ ! -f "$out/checkpoint.pt" && -f "$ARCHIVE/cube-single-$job.tar" ]]; then
        mkdir -p "$out" && tar -xf "$ARCHIVE/cube-single-$job.tar" -C "$out" && log "$job: restored from the archive"
    fi
    left=$((deadline - SECONDS))
    ((left > 120)) || { log "$job: no time left in this sitting"; return 0; }
    [[ -f "$out/checkpoint.pt" ]] && resume=(--resume)
    log "$job: training $ENV_NAME with $method, seed $seed, to $ITERATIONS iterations ${resume[*]}"
    timeout -s TERM "$left" .venv/bin/sorl-lab train --env "$ENV_NAME" --agent.method "$method" --seed "$seed" \
        --iterations "$ITERATIONS" --eval-every 20000 --eval-m-inf 8 --eval-episodes 20 --eval-workers 1 \
        --checkpoint-every 5000 --agent.lr 0.0003 --dataset-dir "$DATA" --out "$out" --no-progress "${resume[@]}" \
        >>"$RUNS/$job.log" 2>&1
    rc=$?
    case $rc in
        0) ;;
        124|130|143) log "$job: stopped at the deadline"; archive "$job"; return 0 ;;
        *) log "$job: training failed (exit $rc), see $RUNS/$job.log"; return 1 ;;
    esac
    log "$job: trained; bundling as $name"
    .venv/bin/python scripts/build_ogbench_assets.py "$out" "$name" --workers 1 >>"$RUNS/$job.log" 2>&1 \
        || { log "$job: bundling failed, see $RUNS/$job.log"; return 1; }
    rm -f "$ARCHIVE/cube-single-$job.tar"  # the bundle replaces the archive (git rm it too)
    log "$job: bundled in assets/ogbench/$name"
}

lane1=() lane2=() load1=0 load2=0
for job in "${jobs_wanted[@]}"; do
    method=${job%-s*}
    [[ -n "${COST[$method]:-}" && $job =~ -s[0-9]+$ ]] || { echo "unknown job $job (e.g. fql-s0; methods: ${!COST[*]})" >&2; exit 2; }
    cost=${COST[$method]}
    [[ -f "assets/ogbench/$(name_of "$job")/policy.pt" ]] && cost=0
    if ((load1 <= load2)); then lane1+=("$job"); ((load1 += cost)); else lane2+=("$job"); ((load2 += cost)); fi
done
log "lane 1: ${lane1[*]:-nothing}; lane 2: ${lane2[*]:-nothing}"

lane() { local job; for job in "$@"; do run_job "$job"; done; }

lane "${lane1[@]}" &
lane "${lane2[@]}" &
wait
log "sitting over"

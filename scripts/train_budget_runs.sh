#!/usr/bin/env bash
# The training-budget runs, across as many sittings as they need: cube-single task 2 with three seeds (one stacked
# model) to 320,000 iterations, and scene task 2, cube-double task 2 and puzzle-3x3 task 4 (FQL's settings, see
# docs/ENVIRONMENTS.md) trained as far as the time allows, each keeping
# snapshots after 10k, 20k, 40k, ... iterations (sorl-lab train --snapshots) to sweep as the training-budget axis.
#
#   bash scripts/train_budget_runs.sh [--minutes M] [JOB ...]     # JOB: cube-single scene cube-double puzzle-3x3
#
# Each sitting: restores every run it finds archived in assets/training/<run>.tar (or resumes runs/budget/ as they
# are), generates missing datasets with OGBench's oracles, trains the jobs one after the other until --minutes have
# passed (SIGTERM then: the iteration in progress finishes and a checkpoint is written), and archives every run
# again: one file per run (checkpoint with optimizer, both targets and noise states; logs; snapshots), replaced
# each sitting. Commit assets/training/ to carry the runs to the next sitting; datasets are never archived.
#
# Knobs (environment): BUDGET_ITERATIONS (cube-single target, default 320000; the others use BUDGET_OTHER,
# default 320000), BUDGET_DATA (dataset folder, default data/ogbench), BUDGET_ARCHIVE (default assets/training),
# BUDGET_WORKERS (processes for dataset generation and evaluation, default 2; 1 beside another lane of work),
# BUDGET_PRECISION (default auto: bf16 where this machine multiplies bf16 natively, else fp32; a resumed run follows),
# BUDGET_EPISODE_LENGTH (quick tests only: shorter generated episodes; not the official recipe), BUDGET_RUNS (the runs'
# folder, default runs/budget).
#
# Replace this file with `mv` while a sitting runs, never edit it in place: bash reads a script as it goes, and a
# running sitting would read the edited bytes from its old offset.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MINUTES=170
if [[ "${1:-}" == "--minutes" ]]; then MINUTES=$2; shift 2; fi
jobs_wanted=("$@")
((${#jobs_wanted[@]})) || jobs_wanted=(cube-single scene cube-double)
DATA="${BUDGET_DATA:-data/ogbench}"
ARCHIVE="${BUDGET_ARCHIVE:-assets/training}"
RUNS="${BUDGET_RUNS:-runs/budget}"
WORKERS="${BUDGET_WORKERS:-2}"
mkdir -p "$RUNS" "$ARCHIVE"
deadline=$((SECONDS + MINUTES * 60))

declare -A ENV=([cube-single]=cube-single-play-singletask-task2-v0 [scene]=scene-play-singletask-task2-v0
                [cube-double]=cube-double-play-singletask-task2-v0 [puzzle-3x3]=puzzle-3x3-play-singletask-task4-v0)
declare -A SEEDS=([cube-single]="0 1 2" [scene]="0" [cube-double]="0" [puzzle-3x3]="0")
declare -A ITERATIONS=([cube-single]="${BUDGET_ITERATIONS:-320000}" [scene]="${BUDGET_OTHER:-320000}"
                       [cube-double]="${BUDGET_OTHER:-320000}" [puzzle-3x3]="${BUDGET_OTHER:-320000}")

log() { echo "$(date +%T) $*" | tee -a "$RUNS/status"; }

folders() {  # the run folders of a job, one per seed
    local job=$1 seed
    for seed in ${SEEDS[$job]}; do
        if [[ "${SEEDS[$job]}" == *" "* ]]; then echo "$RUNS/$job-s$seed"; else echo "$RUNS/$job"; fi
    done
}

restore() {  # an archived run comes back unless the folder here is already further along
    local folder=$1 tar="$ARCHIVE/$(basename "$1").tar"
    [[ -f "$tar" && ! -f "$folder/checkpoint.pt" ]] || return 0
    mkdir -p "$folder" && tar -xf "$tar" -C "$folder" && log "restored $folder from $tar"
}

archive() {  # one file per run, replaced: the checkpoint to resume from, the logs and the snapshots
    local folder=$1 tar="$ARCHIVE/$(basename "$1").tar"
    [[ -f "$folder/checkpoint.pt" ]] || return 0
    tar -cf "$tar.tmp" -C "$folder" checkpoint.pt config.json metrics.csv eval.csv snapshots 2>/dev/null \
        && mv "$tar.tmp" "$tar" && log "archived $folder -> $tar ($(du -h "$tar" | cut -f1))"
}

train() {
    local job=$1 left=$((deadline - SECONDS)) resume=() out
    ((left > 60)) || { log "$job: no time left in this sitting"; return 0; }
    for out in $(folders "$job"); do restore "$out"; done
    out=$(folders "$job" | head -1)
    [[ -f "$out/checkpoint.pt" ]] && resume=(--resume)
    local base="$RUNS/$job" quick=()
    [[ -n "${BUDGET_EPISODE_LENGTH:-}" ]] && quick=(--eval-episodes 2)  # a quick test: 2 evaluation episodes
    log "$job: training ${ENV[$job]} seeds ${SEEDS[$job]} to ${ITERATIONS[$job]} iterations ${resume[*]} (at most $((left / 60)) min)"
    # SIGTERM at the deadline: the loop finishes its iteration and writes every seed's checkpoint (exit 130).
    timeout -s TERM "$left" .venv/bin/sorl-lab train --env "${ENV[$job]}" --seed ${SEEDS[$job]} \
        --iterations "${ITERATIONS[$job]}" --eval-every 40000 --eval-episodes 20 --eval-workers "$WORKERS" \
        --checkpoint-every 5000 --agent.precision "${BUDGET_PRECISION:-auto}" --agent.lr 0.0003 --dataset-dir "$DATA" \
        --out "$base" --no-progress "${resume[@]}" "${quick[@]}" >>"$RUNS/$job.log" 2>&1
    local rc=$?
    case $rc in
        0) log "$job: reached ${ITERATIONS[$job]} iterations" ;;
        124|130|143) log "$job: stopped at the deadline; resumes next sitting" ;;
        *) log "$job: training failed (exit $rc), see $RUNS/$job.log" ;;
    esac
    for out in $(folders "$job"); do archive "$out"; done
}

dataset() {  # 0: the dataset is there; 2: the deadline came first (finished chunks are kept); 1: generation failed
    local name extra=() left=$((deadline - SECONDS))
    name=$(.venv/bin/python -c "from sorl_core.ogbench.datasets import dataset_name_for as f; print(f('$1'))")
    [[ -f "$DATA/$name.npz" && -f "$DATA/$name-val.npz" ]] && return 0
    ((left > 60)) || { log "$name: no time left in this sitting to generate it"; return 2; }
    [[ -n "${BUDGET_EPISODE_LENGTH:-}" ]] && extra=(--episodes 4 --episode-length "$BUDGET_EPISODE_LENGTH")
    log "generating $name with $WORKERS worker(s) (cube-double: 27 min on 2; at most $((left / 60)) min, resumable)"
    # Generation obeys the sitting's deadline too: chunks are written atomically, so the next sitting resumes them.
    timeout -s TERM "$left" .venv/bin/sorl-lab data generate "$name" --dataset-dir "$DATA" --workers "$WORKERS" \
        --no-progress "${extra[@]}" >>"$RUNS/data-$name.log" 2>&1
    case $? in
        0) return 0 ;;
        124|143) log "$name: generation stopped at the deadline; resumes next sitting"; return 2 ;;
        *) log "$name: generation failed, see $RUNS/data-$name.log"; return 1 ;;
    esac
}

for job in "${jobs_wanted[@]}"; do
    [[ -n "${ENV[$job]:-}" ]] || { echo "unknown job $job (cube-single scene cube-double puzzle-3x3)" >&2; exit 2; }
done
for job in "${jobs_wanted[@]}"; do
    dataset "${ENV[$job]}"
    case $? in
        0) train "$job" ;;
        2) ;;  # out of time: the later jobs find none either, and say so
        *) exit 1 ;;
    esac
done
log "sitting over: commit $ARCHIVE/ to keep the runs (git add $ARCHIVE && git commit)"

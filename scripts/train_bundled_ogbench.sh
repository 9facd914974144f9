#!/usr/bin/env bash
# Rebuild the bundled OGBench policies from nothing, on a CPU, resumably: generate each dataset with OGBench's
# oracles, train with the lab-size recipe of cube-single-task2 (the card's command), then bundle the policy, its
# 50-episode M_inf x N sweep and its card (scripts/build_ogbench_assets.py) and rewrite assets/ogbench/RESULTS.md.
#
#   bash scripts/train_bundled_ogbench.sh [JOB ...]      # JOB: cube-single-s1 cube-single-s2 cube-double scene
#
# Two trainings run side by side with one thread each (a 2-core machine: about 60 min for 80,000 iterations of
# cube-single each). Run it again after an interruption: finished datasets and bundles are kept, trainings resume
# from their last checkpoint (every 10,000 iterations). Logs: runs/bundled-ogbench/*.log.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA="${SORL_DATA_DIR:-data/ogbench}"
LOGS=runs/bundled-ogbench
mkdir -p "$LOGS"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
jobs_wanted=("$@")
((${#jobs_wanted[@]})) || jobs_wanted=(cube-single-s1 cube-single-s2 cube-double scene)

# job -> environment, seed, asset name, card note
declare -A ENV=([cube-single-s1]=cube-single-play-singletask-task2-v0 [cube-single-s2]=cube-single-play-singletask-task2-v0
                [cube-double]=cube-double-play-singletask-task2-v0 [scene]=scene-play-singletask-task2-v0)
declare -A SEED=([cube-single-s1]=1 [cube-single-s2]=2 [cube-double]=0 [scene]=0)
declare -A NAME=([cube-single-s1]=cube-single-task2-s1 [cube-single-s2]=cube-single-task2-s2
                 [cube-double]=cube-double-task2 [scene]=scene-task2)
declare -A OUT=([cube-single-s1]=runs/cube-single-task2-s1 [cube-single-s2]=runs/cube-single-task2-s2
                [cube-double]=runs/cube-double-task2-s0 [scene]=runs/scene-task2-s0)
SEED_NOTE="Same recipe, dataset and settings as cube-single-task2 except the training seed; with cube-single-task2 and its other seed it gives the Scaling study page three seeds of one recipe. Trained side by side with the other seed on a shared 2-core machine, one thread each."
ENV_NOTE="Differences from the paper's recipe, for a CPU budget: lab-size networks (3 x 256, not 4 x 512), bf16 matrices, learning rate 3e-4 (FQL's value; the paper's is 1e-4), 80,000 iterations instead of 1,000,000, a dataset regenerated offline by the official procedure (not the official file), and 20 episodes per evaluation during training (50 in the sweep below). The environment's preset (discount, AGG, q_loss_coef) is the paper's."
declare -A NOTE=([cube-single-s1]="$SEED_NOTE" [cube-single-s2]="$SEED_NOTE" [cube-double]="$ENV_NOTE" [scene]="$ENV_NOTE")

log() { echo "$(date +%T) $*" | tee -a "$LOGS/status"; }

dataset() {  # the dataset file an environment trains on, generated once
    local name
    name=$(.venv/bin/python -c "from sorl_core.ogbench.datasets import dataset_name_for as f; print(f('$1'))")
    [[ -f "$DATA/$name.npz" && -f "$DATA/$name-val.npz" ]] && return 0
    log "generating $name"
    .venv/bin/sorl-lab data generate "$name" --dataset-dir "$DATA" --workers 2 --no-progress >"$LOGS/data-$name.log" 2>&1
}

train_and_bundle() {
    local job=$1 out="${OUT[$1]}" resume=()
    [[ -f "assets/ogbench/${NAME[$job]}/policy.pt" ]] && { log "$job: already bundled"; return 0; }
    [[ -f "$out/checkpoint.pt" ]] && resume=(--resume)
    log "$job: training ${ENV[$job]} seed ${SEED[$job]} ${resume[*]}"
    .venv/bin/sorl-lab train --env "${ENV[$job]}" --seed "${SEED[$job]}" --iterations 80000 --eval-every 10000 \
        --eval-episodes 20 --eval-workers 1 --agent.precision auto --agent.lr 0.0003 --dataset-dir "$DATA" \
        --out "$out" --no-progress "${resume[@]}" >>"$LOGS/$job.log" 2>&1 || { log "$job: training failed"; return 1; }
    log "$job: bundling"
    .venv/bin/python scripts/build_ogbench_assets.py "$out" "${NAME[$job]}" --workers 1 --note "${NOTE[$job]}" \
        >>"$LOGS/$job.log" 2>&1 || { log "$job: bundling failed"; return 1; }
    log "$job: bundled in assets/ogbench/${NAME[$job]}"
}

for job in "${jobs_wanted[@]}"; do
    [[ -n "${ENV[$job]:-}" ]] || { echo "unknown job $job (cube-single-s1 cube-single-s2 cube-double scene)" >&2; exit 2; }
    dataset "${ENV[$job]}" || { log "dataset for $job failed"; exit 1; }
done
# Two at a time: one thread each.
for ((i = 0; i < ${#jobs_wanted[@]}; i += 2)); do
    train_and_bundle "${jobs_wanted[i]}" &
    ((i + 1 < ${#jobs_wanted[@]})) && train_and_bundle "${jobs_wanted[i + 1]}" &
    wait
done
.venv/bin/python scripts/build_results_table.py >/dev/null && log "RESULTS.md rewritten"

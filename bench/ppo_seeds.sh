#!/usr/bin/env bash
# The PPO questioners over 3 training seeds: seed 0 is the shipped run; this trains seeds 1 and 2 with
# the same configs and evaluates every seed's best policy on the 2,064 benchmark targets: Hits@10 and BRI
# over seeds x targets with stratified bootstrap intervals (bench/ppo_seeds_eval.py -> bench/results/ppo_seeds_<world>.json).
#   bash bench/ppo_seeds.sh        (about 25 minutes on 2 idle cores)
set -euo pipefail
cd "$(dirname "$0")/.."
for world in shapes_oracle shapes; do
  for seed in 1 2; do
    .venv/bin/chatir train ppo --config configs/ppo_$world.yaml --set seed=$seed --out-dir runs/ppo_seeds/$world-seed$seed
  done
done
for world in shapes_oracle shapes; do
  .venv/bin/python bench/ppo_seeds_eval.py --world $world --policy 0=agents/policies/ppo_$world.pt \
      --policy 1=runs/ppo_seeds/$world-seed1/best_policy.pt --policy 2=runs/ppo_seeds/$world-seed2/best_policy.pt
done

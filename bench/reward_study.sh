#!/usr/bin/env bash
# Which reward trains the best pooled PPO questioner on ChatIR/ShapesOracle-v0?
# Same budget (25,000 env steps), seed and hyper-parameters for each; validation on 500 held-out targets.
# The last validation of each run is saved to bench/results/reward_study.json.
#   bash bench/reward_study.sh            (about 10 minutes a run on 2 idle cores)
set -euo pipefail
cd "$(dirname "$0")/.."
CHATIR=${CHATIR:-.venv/bin/chatir}
for variant in "log_rank_delta 0.0" "rank_delta 0.0" "best_log_rank_delta 0.0" "log_rank_delta 1.0"; do
  set -- $variant
  out=runs/reward_study/$1-bonus$2
  $CHATIR train ppo --config configs/ppo_shapes_oracle.yaml --set reward=$1 --set hit_bonus=$2 \
      --set total_timesteps=25000 --set eval_every=25000 --out-dir "$out"
done
.venv/bin/python - <<'PY'
import json, pathlib, sys
sys.path.insert(0, "bench")
from _results import save

rows = {}
print(f"{'reward':<34} {'Hits@10 R5':>10} {'Hits@10 R10':>11} {'BRI':>6}")
for d in sorted(pathlib.Path("runs/reward_study").iterdir()):
    v = json.loads((d / "validation.json").read_text())[-1]
    rows[d.name] = {k: v[k] for k in ("timesteps", "hits@10_round5", "hits@10_round10", "bri")}
    print(f"{d.name:<34} {v['hits@10_round5']:10.1f} {v['hits@10_round10']:11.1f} {v['bri']:6.3f}")
save("reward_study", {"world": "shapes_oracle", "validation_targets": 500, "training_seed": 0, "runs": rows},
     command="bash bench/reward_study.sh")
PY

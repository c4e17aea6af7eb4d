#!/usr/bin/env bash
# The PPO questioners over 3 training seeds: seed 0 is the shipped run; this trains seeds 1 and 2 with
# the same configs and evaluates every seed's best policy on the 2,064 benchmark targets.
#   bash bench/ppo_seeds.sh        (about 25 minutes on 2 idle cores)
set -euo pipefail
cd "$(dirname "$0")/.."
for world in shapes_oracle shapes; do
  for seed in 1 2; do
    .venv/bin/chatir train ppo --config configs/ppo_$world.yaml --set seed=$seed --out-dir runs/ppo_seeds/$world-seed$seed
  done
done
.venv/bin/python - <<'PY'
import numpy as np
from chatir_env.agents.policy import PolicyQuestioner
from chatir_env.eval.runner import play_episodes
from chatir_env.metrics import bri, hits_at_k
from chatir_env.worlds import build_world

for world_name in ("shapes_oracle", "shapes"):
    world = build_world(world_name, split="benchmark")
    rows = []
    for seed, path in [(0, f"agents/policies/ppo_{world_name}.pt"),
                       (1, f"runs/ppo_seeds/{world_name}-seed1/best_policy.pt"),
                       (2, f"runs/ppo_seeds/{world_name}-seed2/best_policy.pt")]:
        q = PolicyQuestioner(path)
        q.bind_world(world)
        ranks = play_episodes(world, q, progress=False).ranks
        h = hits_at_k(ranks)
        rows.append((h[5], h[10], bri(ranks)))
        print(f"{world_name} seed {seed}: Hits@10 R5 {h[5]:.1f}  R10 {h[10]:.1f}  BRI {bri(ranks):.3f}")
    a = np.array(rows)
    print(f"{world_name} over 3 seeds: R5 {a[:,0].mean():.1f} ± {a[:,0].std(ddof=1):.1f}, "
          f"R10 {a[:,1].mean():.1f} ± {a[:,1].std(ddof=1):.1f}, BRI {a[:,2].mean():.3f} ± {a[:,2].std(ddof=1):.3f} (mean ± sd)")
PY

"""PPO training throughput on Shapes: MaskablePPO on the batched ``PooledVecEnv`` vs on SB3's ``DummyVecEnv``.

The ``DummyVecEnv`` holds N ``PooledChatIREnv``s (the same episodes, one at a time). Env steps per second
of ``learn()`` (rollouts and updates), both measured in one run.

    .venv/bin/python bench/bench_ppo_throughput.py --world shapes_oracle --num-envs 64 --rollouts 3
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch
from _results import save
from sb3_contrib import MaskablePPO
from stable_baselines3.common.vec_env import DummyVecEnv

import chatir_env  # noqa: F401
from chatir_env.pooled import PooledChatIREnv
from chatir_env.sb3_vec_env import PooledVecEnv
from chatir_env.worlds import build_world

ENV_IDS = {"shapes": "ChatIR/Shapes-v0", "shapes_oracle": "ChatIR/ShapesOracle-v0"}


def steps_per_second(venv, num_envs: int, rollouts: int, n_steps: int = 20) -> float:
    model = MaskablePPO("MultiInputPolicy", venv, n_steps=n_steps, batch_size=num_envs * n_steps // 2, n_epochs=2,
                        policy_kwargs={"net_arch": [256, 256]}, seed=0, device="cpu")
    model.learn(num_envs * n_steps)  # warm-up rollout (first index touches, allocations)
    t0 = time.perf_counter()
    model.learn(rollouts * num_envs * n_steps, reset_num_timesteps=False)
    return rollouts * num_envs * n_steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=sorted(ENV_IDS), default="shapes_oracle")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--rollouts", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    world = build_world(args.world, split="train", num_targets=None)
    batched = steps_per_second(PooledVecEnv(world, args.num_envs), args.num_envs, args.rollouts)
    dummy = DummyVecEnv([lambda: PooledChatIREnv(gym.make(ENV_IDS[args.world], world=world))] * args.num_envs)
    looped = steps_per_second(dummy, args.num_envs, args.rollouts)
    print(f"{ENV_IDS[args.world]}: MaskablePPO on PooledVecEnv {batched:.1f} env steps/s, on DummyVecEnv {looped:.1f}"
          f" env steps/s; ratio {batched / looped:.1f}x (N = {args.num_envs}, torch threads {args.threads})")
    save(f"ppo_throughput_{args.world}", {
        "world": ENV_IDS[args.world], "num_envs": args.num_envs, "torch_threads": args.threads,
        "pooled_vec_env_steps_per_s": round(batched, 1), "dummy_vec_env_steps_per_s": round(looped, 1),
        "ratio": round(batched / looped, 2)})


if __name__ == "__main__":
    main()

"""Shapes env throughput: the batched vector env at N episodes vs N single envs stepped in a loop.

Both play the same number of rounds with the same questions; the ratio of env steps per second is
measured in one run on one machine.

    .venv/bin/python bench/bench_env_steps.py                 # both Shapes worlds, N = 64
    .venv/bin/python bench/bench_env_steps.py --world shapes_oracle --num-envs 64 --episodes 2
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch
from _results import save

import chatir_env  # noqa: F401
from chatir_env.worlds.shapes_language import POOL_TEXTS

ENV_IDS = {"shapes": "ChatIR/Shapes-v0", "shapes_oracle": "ChatIR/ShapesOracle-v0"}


def question(episode: int, round_: int) -> str:
    return POOL_TEXTS[(episode * 7 + round_ * 13) % len(POOL_TEXTS)]


def bench(world: str, num_envs: int, episodes: int) -> tuple[float, float]:
    env_id = ENV_IDS[world]
    # warm up: build the world (cached in-process) so neither side pays for it
    gym.make(env_id).reset(seed=0)

    envs = gym.make_vec(env_id, num_envs=num_envs)
    envs.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(episodes):
        for r in range(10):
            envs.step([question(i, r) for i in range(num_envs)])
    vector_sps = episodes * 10 * num_envs / (time.perf_counter() - t0)

    singles = [gym.make(env_id) for _ in range(num_envs)]
    for i, env in enumerate(singles):
        env.reset(seed=i)
    t0 = time.perf_counter()
    for _ in range(episodes):
        for r in range(10):
            for i, env in enumerate(singles):
                env.step(question(i, r))
        for i, env in enumerate(singles):
            env.reset()
    single_sps = episodes * 10 * num_envs / (time.perf_counter() - t0)
    return vector_sps, single_sps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=sorted(ENV_IDS), action="append")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}, N = {args.num_envs}, {args.episodes} episodes of 10 rounds each")
    figures = {}
    for world in args.world or sorted(ENV_IDS):
        vector_sps, single_sps = bench(world, args.num_envs, args.episodes)
        print(f"{ENV_IDS[world]:<24} vector env {vector_sps:8.1f} steps/s   "
              f"{args.num_envs} single envs {single_sps:8.1f} steps/s"
              f"   ratio {vector_sps / single_sps:5.1f}x")
        figures[ENV_IDS[world]] = {"vector_env_steps_per_s": round(vector_sps, 1),
                                   "single_envs_steps_per_s": round(single_sps, 1), "ratio": round(vector_sps / single_sps, 2)}
    save("env_steps", {"num_envs": args.num_envs, "episodes": args.episodes, "torch_threads": torch.get_num_threads(),
                       "worlds": figures})


if __name__ == "__main__":
    main()

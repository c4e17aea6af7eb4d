"""examples/pooled_reinforce.py runs a few updates: finite losses, only allowed questions asked."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import torch

from chatir_env.sb3_vec_env import PooledVecEnv

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pooled_reinforce.py"


def load_example():
    spec = importlib.util.spec_from_file_location("pooled_reinforce", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_returns_to_go_by_hand():
    example = load_example()
    rewards = torch.tensor([[1.0, 0.0], [2.0, -1.0], [3.0, 0.5]])  # [rounds, envs]
    assert example.returns_to_go(rewards).tolist() == [[6.0, -0.5], [5.0, -0.5], [3.0, 0.5]]


def test_the_example_trains_a_few_updates_on_the_train_split_within_the_masks(monkeypatch):
    example = load_example()
    steps, worlds = [], []
    step_async, init = PooledVecEnv.step_async, PooledVecEnv.__init__

    def checked_step(self, actions):
        allowed = self.action_masks()[np.arange(self.num_envs), np.asarray(actions)]
        steps.append((np.asarray(actions).copy(), allowed))
        return step_async(self, actions)

    def recorded_init(self, world, *args, **kwargs):
        worlds.append(world)
        init(self, world, *args, **kwargs)

    monkeypatch.setattr(PooledVecEnv, "step_async", checked_step)
    monkeypatch.setattr(PooledVecEnv, "__init__", recorded_init)
    cfg = example.Config(corpus_size=300, num_envs=6, max_rounds=4, updates=3, hidden=16, top_k=10)
    history = example.main(cfg)

    assert len(history["loss"]) == 3 and all(math.isfinite(x) for x in history["loss"])
    assert all(math.isfinite(x) for x in history["return"])
    assert len(steps) == 3 * 4 and all(allowed.all() for _, allowed in steps)  # no masked question was picked
    for update in range(3):  # within an episode no question is asked twice (asked ones are masked)
        asked = np.stack([actions for actions, _ in steps[update * 4 : update * 4 + 4]])  # [rounds, envs]
        assert all(len(set(asked[:, env])) == 4 for env in range(6))
    assert worlds[0].config["split"] == "train"

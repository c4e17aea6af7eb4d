"""REINFORCE on the pooled Shapes env, in plain torch: a masked policy picks questions from the pool.

    python examples/pooled_reinforce.py                       # the defaults below: a few minutes on a CPU
    python examples/pooled_reinforce.py --updates 400 --corpus-size 20000

``PooledVecEnv`` steps ``num_envs`` episodes as one batch. Its observation is a dict of vectors (the
dialog's encoding, the round, which pool questions were asked, each question's answer entropy over the
current top candidates, the candidates' score profile); its action is the index of a pool question;
``action_masks()`` says which questions may still be asked. The target's rank is never observed: the
reward is the change of log rank, so an episode's return is ln(r0 + 1) - ln(rR + 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np
import torch
from torch import nn

from chatir_env.sb3_vec_env import PooledVecEnv
from chatir_env.worlds import build_world


@dataclasses.dataclass
class Config:
    world: str = "shapes_oracle"
    """registered world: shapes_oracle (exact retriever, fast) or shapes (the learned encoder)"""
    corpus_size: int = 2_000
    """scenes in the corpus; training draws its targets from all of them (train split)"""
    num_envs: int = 32
    """episodes played as one batch per update"""
    max_rounds: int = 5
    """questions per episode"""
    updates: int = 100
    """policy updates; each plays one batch of whole episodes"""
    learning_rate: float = 3e-3
    """Adam's step size"""
    hidden: int = 64
    """width of the policy's hidden layer"""
    top_k: int = 20
    """candidates the observation's answer entropies are computed over"""
    seed: int = 0
    """seeds the targets and the policy"""


class MaskedPolicy(nn.Module):
    """An MLP from the flattened observation to one logit per pool question; masked questions get -inf."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, num_actions))

    def forward(self, obs: torch.Tensor, masks: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=self.net(obs).masked_fill(~masks, -math.inf))


def flatten(obs: dict) -> torch.Tensor:
    """The observation dict's vectors side by side, in a fixed key order: ``[num_envs, obs_dim]``."""
    return torch.as_tensor(np.concatenate([obs[key] for key in sorted(obs)], axis=1), dtype=torch.float32)


def returns_to_go(rewards: torch.Tensor) -> torch.Tensor:
    """``[rounds, num_envs]`` rewards -> the sum of each round's reward and all later ones (no discount)."""
    return rewards.flip(0).cumsum(0).flip(0)


def main(cfg: Config) -> dict:
    torch.manual_seed(cfg.seed)
    # 1. the world: its train split (the default), so no benchmark scene is ever trained on
    world = build_world(cfg.world, split="train", corpus_size=cfg.corpus_size, num_targets=None)
    envs = PooledVecEnv(world, cfg.num_envs, cfg.max_rounds, top_k=cfg.top_k, seed=cfg.seed)
    obs = envs.reset()

    # 2. the policy and its optimiser
    policy = MaskedPolicy(flatten(obs).shape[1], envs.action_space.n, cfg.hidden)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)

    history = {"loss": [], "return": []}
    for update in range(cfg.updates):
        # 3. play one batch of whole episodes (they all end after max_rounds and restart together)
        log_probs, rewards = [], []
        for _ in range(cfg.max_rounds):
            masks = torch.as_tensor(envs.action_masks(), dtype=torch.bool)
            dist = policy(flatten(obs), masks)
            actions = dist.sample()
            obs, reward, dones, infos = envs.step(actions.numpy())
            log_probs.append(dist.log_prob(actions))
            rewards.append(torch.as_tensor(reward, dtype=torch.float32))
        assert dones.all(), "every episode ends after max_rounds"

        # 4. REINFORCE with a per-round baseline: the batch's mean return-to-go
        to_go = returns_to_go(torch.stack(rewards))
        advantages = to_go - to_go.mean(dim=1, keepdim=True)
        loss = -(torch.stack(log_probs) * advantages).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        history["loss"].append(loss.item())
        history["return"].append(to_go[0].mean().item())  # the mean episode return: ln(r0 + 1) - ln(rR + 1)
        if update % 10 == 0 or update == cfg.updates - 1:
            print(f"update {update:4d}  loss {loss.item():+.4f}  mean return {history['return'][-1]:.3f}")
    return history


def parse_args() -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for field in dataclasses.fields(Config):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    return Config(**vars(parser.parse_args()))


if __name__ == "__main__":
    main(parse_args())

"""Train a pooled questioner with MaskablePPO (sb3-contrib), CleanRL-style: read top to bottom.

    chatir train ppo --config configs/ppo_shapes.yaml

1. Build the training world (its ``train`` split: other scenes than the benchmark's) and a
   validation world (``validation``: Shapes' benchmark corpus with targets held out from the
   benchmark's 2,064; VisDial train's held-out slice).
2. Wrap N training episodes in one ``PooledVecEnv`` (one batched step for all of them).
3. MaskablePPO over a Dict observation (dialog vector, round, asked mask, per-question answer
   entropy over the top candidates, candidate score profile), actions masked to unasked questions.
4. Every ``eval_every`` steps: play the validation targets with the current policy, log Hits@10 at
   rounds 5 and 10, mean rank and BRI to TensorBoard, keep ``best.zip``, save ``last.zip``.
5. Rerunning the same command resumes from ``last.zip``. Each run of the command is a segment: its
   validation rows carry its number, their ``minutes`` count wall time across segments, and every
   checkpoint (``last.zip``, ``best.zip``, ``final.zip``) has a ``.json`` beside it naming the command
   that wrote it (with its ``--set``, ``--steps`` and ``--out-dir``), the segment and the wall time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt, field_validator, model_validator
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from ..agents.gain_policy import GainBiasPolicy
from ..agents.policy import PolicyQuestioner
from ..atomic import atomic_write, atomic_write_json
from ..config import check_name, validate
from ..eval.runner import play_episodes
from ..metrics import bri, hits_at_k
from ..progress import progress
from ..rewards import REWARDS
from ..sb3_vec_env import EPISODE_INFO_KEYS, PooledVecEnv
from ..worlds import build_world
from ..worlds.schema import WorldSection
from .cli import recorded_command

# World arguments the trainer sets itself: the train split for training, held-out targets for validation.
RESERVED_WORLD_ARGS = ("split", "num_targets", "target_set")


class PPOConfig(WorldSection):
    """``chatir train ppo``: one field per line of the YAML config (``--set KEY=VALUE`` overrides one)."""

    reserved_world_args = RESERVED_WORLD_ARGS

    world: str = Field("shapes_oracle", description="registered world to train in (its train split)")
    world_kwargs: dict[str, Any] = Field(default_factory=dict, description="the world's keyword arguments (`chatir worlds`), "
                                         "except split, num_targets and target_set, which the trainer sets")
    reward: str = Field("log_rank_delta", description="per-round reward (chatir_env.rewards)")
    hit_bonus: float = Field(0.0, ge=0, description="added on the round the target first enters the top 10")
    max_rounds: int = Field(10, ge=1, description="questions per episode")
    num_envs: int = Field(64, ge=1, description="episodes stepped as one batch")
    total_timesteps: int = Field(200_000, ge=1, description="env steps in all (a resumed run continues to this count)")
    n_steps: int = Field(20, ge=1, description="rollout length per env (20: two whole episodes)")
    batch_size: int = Field(640, ge=2, description="PPO minibatch size")
    n_epochs: int = Field(4, ge=1, description="PPO epochs per rollout")
    learning_rate: float = Field(3e-4, gt=0, description="Adam learning rate")
    gamma: float = Field(0.9, ge=0, le=1, description="discount factor")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    ent_coef: float = Field(0.01, ge=0, description="entropy bonus coefficient")
    clip_range: float = Field(0.2, gt=0, description="PPO clip range")
    policy: Literal["MultiInputPolicy", "gain_bias"] = Field(
        "MultiInputPolicy", description="MultiInputPolicy: an MLP over the observation; gain_bias: the MLP's logits plus a "
                                        "learned scale (from 20) times each question's answer entropy, so training "
                                        "starts at the greedy questioner (chatir_env.agents.gain_policy)")
    gain_scale: float | None = Field(None, ge=0, description="with policy: gain_bias, the scale's initial value (None: "
                                                           "the policy's default, 20; 0 starts as the plain MLP)")
    net_arch: list[PositiveInt] = Field(default_factory=lambda: [256, 256], min_length=1,
                                        description="hidden layer sizes of the policy and value networks")
    top_k: int = Field(50, ge=1, description="candidates whose answers make the observation's answer-entropy features")
    eval_every: int = Field(20_000, ge=1, description="env steps between validations")
    eval_targets: int = Field(500, ge=1, description="held-out validation targets (disjoint from the benchmark's)")
    validation: dict[str, Any] = Field(default_factory=lambda: {"split": "benchmark", "target_set": "validation"},
                                       description="keyword arguments that turn the world into its validation world "
                                                   "(VisDial train: {split: val})")
    max_pool: PositiveInt | None = Field(None, description="actions; None: the world's config max_pool, else its first "
                                                          "target's pool size")
    select_by: Literal["bri", "hits@10_round5"] = Field("bri", description="best.zip by validation BRI (lower is better) "
                                                        "or by Hits@10 at round 5")
    seed: int = Field(0, ge=0, description="seed of the policy and the episodes")
    threads: int = Field(1, ge=1, description="torch threads (one: OpenMP spinning on a busy machine costs more "
                                                   "than it gives)")
    out_dir: str = Field("runs/ppo_shapes", description="run folder: checkpoints, validation.json, TensorBoard logs")

    @field_validator("reward")
    @classmethod
    def _reward_exists(cls, reward: str) -> str:
        return check_name("reward", reward, REWARDS)

    @model_validator(mode="after")
    def _gain_scale_needs_gain_bias(self) -> "PPOConfig":
        if self.gain_scale is not None and self.policy != "gain_bias":
            raise ValueError(f"gain_scale={self.gain_scale} needs policy: gain_bias (the policy is {self.policy})")
        return self


CONFIG_SCHEMAS = {"ppo config": PPOConfig}


def policy_kwargs(cfg: PPOConfig) -> dict[str, Any]:
    """SB3's ``policy_kwargs`` for the configured policy."""
    kwargs: dict[str, Any] = {"net_arch": cfg.net_arch}
    if cfg.gain_scale is not None:
        kwargs["gain_scale"] = cfg.gain_scale
    return kwargs
POLICIES = {"MultiInputPolicy": "MultiInputPolicy", "gain_bias": GainBiasPolicy}  # for `chatir train ppo --fields`



class RunClock:
    """Wall time across the segments of a run (each resume is a new segment), read from ``last.json``."""

    def __init__(self, out: Path, command: str):
        previous = json.loads((out / "last.json").read_text()) if (out / "last.json").exists() else {}
        history = json.loads((out / "validation.json").read_text()) if (out / "validation.json").exists() else []
        # A run from before segments were recorded: its history is segment 1 and its minutes the time spent.
        self.segment = 1 + max([previous.get("segment", 0)] + [h.get("segment", 1) for h in history])
        self.offset = max([previous.get("wall_seconds", 0.0)] + [60 * h.get("minutes", 0.0) for h in history])
        self.command = command
        self.segments = previous.get("segments", []) + [{"segment": self.segment, "command": command}]
        self.start = time.time()

    def seconds(self) -> float:
        return self.offset + time.time() - self.start

    def save(self, model: MaskablePPO, path: Path, **extra: Any) -> None:
        """``model`` to ``path`` (a .zip), and ``path.with_suffix(".json")``: the command, segment and time."""
        atomic_write(path, lambda tmp: model.save(tmp))
        atomic_write_json(path.with_suffix(".json"), {
            "command": self.command, "segment": self.segment, "timesteps": int(model.num_timesteps),
            "wall_seconds": round(self.seconds(), 1), "segments": self.segments, **extra,
        })


class ProgressCallback(BaseCallback):
    """Env steps on a progress bar (periodic lines when stderr is not a terminal)."""

    def _on_training_start(self) -> None:
        self.bar = progress(total=self.locals["total_timesteps"], initial=self.model.num_timesteps, desc="ppo", unit="step")

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


class ValidationCallback(BaseCallback):
    """Plays the validation targets with the current policy; logs, keeps the best and the last model."""

    def __init__(self, world, cfg: PPOConfig, out: Path, clock: RunClock):
        super().__init__()
        self.world, self.cfg, self.out, self.clock = world, cfg, out, clock
        history = out / "validation.json"
        self.history = json.loads(history.read_text()) if history.exists() else []  # resumed runs keep theirs
        self.best = min((h["score"] for h in self.history), default=float("inf"))
        best = out / "best.json"
        self.best_command = json.loads(best.read_text())["command"] if best.exists() else None
        self.next_eval = cfg.eval_every

    def _on_training_start(self) -> None:
        self.next_eval = (self.num_timesteps // self.cfg.eval_every + 1) * self.cfg.eval_every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.next_eval += self.cfg.eval_every
            self.validate()
        return True

    def _on_training_end(self) -> None:
        last = self.history[-1] if self.history else {}
        if (last.get("segment"), last.get("timesteps")) != (self.clock.segment, self.num_timesteps):
            self.validate()  # unless the periodic validation just ran at this very step

    def validate(self) -> None:
        questioner = PolicyQuestioner(self.model)
        questioner.bind_world(self.world)
        record = play_episodes(self.world, questioner, max_rounds=self.cfg.max_rounds, progress=False)
        hits = hits_at_k(record.ranks)
        row = {
            "segment": self.clock.segment,
            "timesteps": int(self.num_timesteps),
            "minutes": round(self.clock.seconds() / 60, 2),  # wall time since the run's first segment started
            "hits@10_round5": float(hits[min(5, self.cfg.max_rounds)]),
            "hits@10_round10": float(hits[-1]),
            "mean_rank_final": float(record.ranks[-1].mean()),
            "bri": bri(record.ranks),
        }
        row["score"] = row["bri"] if self.cfg.select_by == "bri" else -row["hits@10_round5"]
        for key in ("hits@10_round5", "hits@10_round10", "mean_rank_final", "bri"):
            self.logger.record(f"validation/{key}", row[key])
        self.history.append(row)
        self.clock.save(self.model, self.out / "last.zip", validation=row)
        if row["score"] < self.best:
            self.best = row["score"]
            row["best"] = True
            self.clock.save(self.model, self.out / "best.zip", validation=row)
            self.best_command = self.clock.command
            # The policy alone (no optimiser state): what a questioner needs, a third of the size.
            atomic_write(self.out / "best_policy.pt", lambda tmp: self.model.policy.save(tmp))
        atomic_write_json(self.out / "validation.json", self.history)
        if row.get("best"):
            atomic_write_json(self.out / "best_policy.json", self.provenance())
        print(json.dumps(row))

    def provenance(self) -> dict:
        """What ``best_policy.json`` records beside the exported policy, so a shipped copy says where it came from.

        The command that trained it, every segment's command, the config, the fingerprint of the retriever
        whose rankings it learnt from (``PolicyQuestioner`` refuses a world with another) and the validation
        history.
        """
        return {"command": self.best_command, "world": self.cfg.world, "config": self.cfg.model_dump(),
                "retriever_fingerprint": getattr(self.world.retriever, "fingerprint", None),
                "selected": f"best validation {self.cfg.select_by}", "segments": self.clock.segments,
                "wall_seconds": round(self.clock.seconds(), 1), "validation": self.history}


def main(config: dict, out_dir: str | None = None, steps: int | None = None) -> int:
    cfg = validate(PPOConfig, config)
    command = recorded_command("ppo", config, out_dir, steps)
    if out_dir:
        cfg.out_dir = out_dir
    if steps:
        cfg.total_timesteps = steps
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", cfg.model_dump())
    torch.set_num_threads(cfg.threads)  # one thread: OpenMP spinning on a busy 2-core box costs more than it gives
    clock = RunClock(out, command)

    # 1. worlds: train on the train split, select on held-out validation targets
    train_world = build_world(cfg.world, split="train", num_targets=None, **cfg.world_kwargs)
    val_world = build_world(cfg.world, num_targets=cfg.eval_targets, **{**cfg.world_kwargs, **cfg.validation})

    # 2. one batched vector env; VecMonitor keeps episode return, length and time (SB3's ep_info_buffer)
    max_pool = cfg.max_pool or train_world.config.get("max_pool")
    venv = VecMonitor(PooledVecEnv(train_world, cfg.num_envs, cfg.max_rounds, cfg.reward, cfg.hit_bonus, max_pool=max_pool,
                                   top_k=cfg.top_k, seed=cfg.seed), info_keywords=EPISODE_INFO_KEYS)

    # 3. the agent (resumed from last.zip when there is one)
    last = out / "last.zip"
    if last.exists():
        model = MaskablePPO.load(str(last), env=venv, device="cpu", tensorboard_log=str(out / "tb"))
        print(f"resuming from {last} at {model.num_timesteps} timesteps (segment {clock.segment})")
    else:
        model = MaskablePPO(
            POLICIES[cfg.policy], venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
            learning_rate=cfg.learning_rate, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef,
            clip_range=cfg.clip_range, policy_kwargs=policy_kwargs(cfg), tensorboard_log=str(out / "tb"),
            seed=cfg.seed, device="cpu", verbose=0,
        )

    # 4. train, validating as we go
    callback = ValidationCallback(val_world, cfg, out, clock)
    remaining = cfg.total_timesteps - model.num_timesteps
    if remaining > 0:
        try:
            model.learn(remaining, callback=[ProgressCallback(), callback], reset_num_timesteps=False, tb_log_name="ppo")
        except KeyboardInterrupt:
            clock.save(model, last)
            print(f"\ninterrupted at {model.num_timesteps} timesteps; saved {last}; rerun to resume")
            raise
    clock.save(model, out / "final.zip")
    atomic_write_json(out / "best_policy.json", callback.provenance())  # with the whole validation history
    print(f"best policy: {out / 'best_policy.pt'} (full checkpoint {out / 'best.zip'})")
    return 0

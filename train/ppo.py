"""Train a pooled questioner with MaskablePPO (sb3-contrib), CleanRL-style: read top to bottom.

    chatir train ppo --config configs/ppo_shapes.yaml

1. Build the training world (its ``train`` split: other scenes than the benchmark's) and a
   validation world (benchmark corpus, targets held out from the benchmark's 2,064).
2. Wrap N training episodes in one ``PooledVecEnv`` (one batched step for all of them).
3. MaskablePPO over a Dict observation (dialog vector, round, asked mask, per-question answer
   entropy over the top candidates, candidate score profile), actions masked to unasked questions.
4. Every ``eval_every`` steps: play the validation targets with the current policy, log Hits@10 at
   rounds 5 and 10, mean rank and BRI to TensorBoard, keep ``best.zip``, save ``last.zip``.
5. Rerunning the same command resumes from ``last.zip``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from ..agents.policy import PolicyQuestioner
from ..config import ConfigError, dataclass_from
from ..eval.runner import play_episodes
from ..metrics import bri, hits_at_k
from ..sb3_vec_env import EPISODE_INFO_KEYS, PooledVecEnv
from ..worlds import build_world


@dataclass
class PPOConfig:
    world: str = "shapes_oracle"
    world_kwargs: dict = field(default_factory=dict)
    reward: str = "log_rank_delta"
    hit_bonus: float = 0.0
    max_rounds: int = 10
    num_envs: int = 64
    total_timesteps: int = 200_000
    n_steps: int = 20                 # rollout length per env (two whole episodes)
    batch_size: int = 640
    n_epochs: int = 4
    learning_rate: float = 3e-4
    gamma: float = 0.9
    gae_lambda: float = 0.95
    ent_coef: float = 0.01
    clip_range: float = 0.2
    net_arch: list = field(default_factory=lambda: [256, 256])
    top_k: int = 50
    eval_every: int = 20_000
    eval_targets: int = 500
    select_by: str = "bri"            # best.zip by validation BRI (lower is better), or "hits@10_round5"
    seed: int = 0
    threads: int = 1
    out_dir: str = "runs/ppo_shapes"


class ValidationCallback(BaseCallback):
    """Plays the validation targets with the current policy; logs, keeps the best and the last model."""

    def __init__(self, world, cfg: PPOConfig, out: Path, start_time: float):
        super().__init__()
        self.world, self.cfg, self.out, self.t0 = world, cfg, out, start_time
        history = out / "validation.json"
        self.history = json.loads(history.read_text()) if history.exists() else []  # resumed runs keep theirs
        self.best = min((h["score"] for h in self.history), default=float("inf"))
        self.next_eval = cfg.eval_every

    def _on_training_start(self) -> None:
        self.next_eval = (self.num_timesteps // self.cfg.eval_every + 1) * self.cfg.eval_every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.next_eval += self.cfg.eval_every
            self.validate()
        return True

    def _on_training_end(self) -> None:
        self.validate()

    def validate(self) -> None:
        questioner = PolicyQuestioner(self.model)
        questioner.bind_world(self.world)
        record = play_episodes(self.world, questioner, max_rounds=self.cfg.max_rounds, progress=False)
        hits = hits_at_k(record.ranks)
        row = {
            "timesteps": int(self.num_timesteps),
            "minutes": round((time.time() - self.t0) / 60, 2),
            "hits@10_round5": float(hits[min(5, self.cfg.max_rounds)]),
            "hits@10_round10": float(hits[-1]),
            "mean_rank_final": float(record.ranks[-1].mean()),
            "bri": bri(record.ranks),
        }
        row["score"] = row["bri"] if self.cfg.select_by == "bri" else -row["hits@10_round5"]
        for key in ("hits@10_round5", "hits@10_round10", "mean_rank_final", "bri"):
            self.logger.record(f"validation/{key}", row[key])
        self.history.append(row)
        self.model.save(str(self.out / "last.zip"))
        if row["score"] < self.best:
            self.best = row["score"]
            self.model.save(str(self.out / "best.zip"))
            # The policy alone (no optimiser state): what a questioner needs, a third of the size.
            self.model.policy.save(str(self.out / "best_policy.pt"))
            row["best"] = True
        (self.out / "validation.json").write_text(json.dumps(self.history, indent=2))
        print(json.dumps(row))


def main(config: dict, out_dir: str | None = None, steps: int | None = None) -> int:
    where = config.get("_path", "config")
    cfg = dataclass_from(PPOConfig, {k: v for k, v in config.items() if not k.startswith("_")}, where)
    if out_dir:
        cfg.out_dir = out_dir
    if steps:
        cfg.total_timesteps = steps
    if cfg.select_by not in ("bri", "hits@10_round5"):
        raise ConfigError(f"{where}: select_by must be 'bri' or 'hits@10_round5', got {cfg.select_by!r}")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    torch.set_num_threads(cfg.threads)  # one thread: OpenMP spinning on a busy 2-core box costs more than it gives

    # 1. worlds: train on the train split, select on held-out validation targets
    train_world = build_world(cfg.world, split="train", num_targets=None, **cfg.world_kwargs)
    val_world = build_world(cfg.world, split="benchmark", target_set="validation", num_targets=cfg.eval_targets, **cfg.world_kwargs)

    # 2. one batched vector env; VecMonitor keeps episode return, length and time (SB3's ep_info_buffer)
    venv = VecMonitor(PooledVecEnv(train_world, cfg.num_envs, cfg.max_rounds, cfg.reward, cfg.hit_bonus, top_k=cfg.top_k,
                                   seed=cfg.seed), info_keywords=EPISODE_INFO_KEYS)

    # 3. the agent (resumed from last.zip when there is one)
    last = out / "last.zip"
    if last.exists():
        model = MaskablePPO.load(str(last), env=venv, device="cpu", tensorboard_log=str(out / "tb"))
        print(f"resuming from {last} at {model.num_timesteps} timesteps")
    else:
        model = MaskablePPO(
            "MultiInputPolicy", venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
            learning_rate=cfg.learning_rate, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef,
            clip_range=cfg.clip_range, policy_kwargs={"net_arch": cfg.net_arch}, tensorboard_log=str(out / "tb"),
            seed=cfg.seed, device="cpu", verbose=0,
        )

    # 4. train, validating as we go
    callback = ValidationCallback(val_world, cfg, out, time.time())
    remaining = cfg.total_timesteps - model.num_timesteps
    if remaining > 0:
        try:
            model.learn(remaining, callback=callback, reset_num_timesteps=False, progress_bar=True, tb_log_name="ppo")
        except KeyboardInterrupt:
            model.save(str(last))
            print(f"\ninterrupted at {model.num_timesteps} timesteps; saved {last}; rerun to resume")
            raise
    model.save(str(out / "final.zip"))
    # Provenance next to the exported policy, so a shipped copy says where it came from.
    (out / "best_policy.json").write_text(json.dumps({
        "command": f"chatir train ppo --config {config.get('_path', '<config>')}",
        "world": cfg.world, "config": asdict(cfg), "selected": f"best validation {cfg.select_by}",
        "validation": callback.history,
    }, indent=2))
    print(f"best policy: {out / 'best_policy.pt'} (full checkpoint {out / 'best.zip'})")
    return 0

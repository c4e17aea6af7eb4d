"""GRPO (TRL) for a language-model questioner, multi-turn, on the ChatIR environment's reward.

``chatir train grpo --config configs/grpo_shapes.yaml`` (``stage: grpo``, the default) or
``--config configs/sft_shapes.yaml`` (``stage: sft``: the supervised warm start, ``chatir_env.train.sft``).
One file per stage: the rollout adapter (``grpo_rollout``: TRL's ``rollout_func`` over the batched
core), the SFT warm start (``sft``), and this one, the GRPO stage: config, warm start (an explicit step:
the SFT config named by ``model.warm_start`` runs first when ``model.path`` is missing), model, world,
trainer, save, evaluate. See docs/grpo.md.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..config import ConfigError, dataclass_from, load_config, resolve_config_path
from ..worlds import build_world
from .grpo_rollout import EnvConfig, EpisodeRollout, question_problem  # noqa: F401  (the rollout's public names)
from .sft import (EvalConfig, _clean, _last_checkpoint, _read_json, _sections, _threads, _trainer_args, _write_json,
                  evaluate_questioner, hits_line, lm_questioner, load_model, run_sft, save_questioner)

STAGES = ("sft", "grpo")


# Reward functions: TRL logs each one's mean as rewards/<name>/mean; only episode_return has weight.
def episode_return(prompts, completions, episode_return=None, **kwargs) -> list[float]:
    return [float(x) for x in episode_return]


def hit_at_10(prompts, completions, hit=None, **kwargs) -> list[float]:
    return [float(x) for x in hit]


def invalid_turns(prompts, completions, invalid_turns=None, **kwargs) -> list[float]:
    return [float(x) for x in invalid_turns]


REWARD_FUNCS = [episode_return, hit_at_10, invalid_turns]
REWARD_WEIGHTS = [1.0, 0.0, 0.0]


# --- the stage ---------------------------------------------------------------------------------------------

def run_warm_start(model_cfg: dict | None, where: str) -> None:
    """The warm start step: run the SFT config ``model.warm_start`` when ``model.path`` does not exist yet.

    Raises:
        ConfigError: the SFT run failed or did not write ``model.path``.
    """
    model_cfg = model_cfg or {}
    path, warm = model_cfg.get("path"), model_cfg.get("warm_start")
    if not path or not warm or Path(path).exists():
        return
    print(f"[grpo] {path} not found: running the warm start {warm} first")
    sft_config = load_config(resolve_config_path(warm))
    if sft_config.get("stage", "grpo") != "sft":
        raise ConfigError(f"{where}: model.warm_start {warm} must be an SFT config (stage: sft)")
    _threads(sft_config)
    code = run_sft(sft_config, None, None)
    if code or not Path(path).exists():
        raise ConfigError(f"{where}: warm start {warm} did not produce {path}")


class _CurveCallback:
    """Every ``curve_every`` steps: Hits@10 of the current policy on a few benchmark targets (monitoring
    only; no checkpoint is selected by it)."""

    def __new__(cls, *args, **kwargs):
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def __init__(self, world, tok, ev, env, path):
                self.world, self.tok, self.ev, self.env, self.path, self.points = world, tok, ev, env, path, []
                self.t0 = time.time()

            def on_train_begin(self, args, state, control, model=None, **kw):
                if self.path.exists():  # resumed: keep the points measured before the checkpoint
                    self.points = [p for p in _read_json(self.path) if p["step"] <= state.global_step]
                if state.global_step == 0:
                    self.measure(model, 0)

            def measure(self, model, step):
                q = lm_questioner(model, self.tok, self.ev, self.env)
                s = evaluate_questioner(self.world, q, dataclasses.replace(self.ev, bootstrap_samples=20),
                                        self.ev.curve_targets, self.ev.curve_rounds)
                point = {"step": step, "hits@10": s["hits@10"][-1], "invalid": s["invalid_questions"],
                         "wall_s": time.time() - self.t0}
                self.points.append(point)
                _write_json(self.path, self.points)
                print(f"[grpo] step {step}: curve Hits@10 R{self.ev.curve_rounds} = {point['hits@10']:.1f}")

            def on_step_end(self, args, state, control, model=None, **kw):
                if state.global_step % self.ev.curve_every == 0 or state.global_step == state.max_steps:
                    self.measure(model, state.global_step)

        return Callback(*args, **kwargs)


def run_grpo(config: dict, out_dir: str | None, steps: int | None) -> int:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    where = config.get("_path", "config")
    _sections(config, where, {"stage", "threads", "out_dir", "model", "lora", "env", "grpo", "eval"})
    out = Path(out_dir or config.get("out_dir") or "runs/grpo_shapes")
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(out / "tb"))
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    env = dataclass_from(EnvConfig, config.get("env"), f"{where}: env")
    ev = dataclass_from(EvalConfig, config.get("eval"), f"{where}: eval")
    t_start = time.time()
    run_warm_start(config.get("model"), where)
    model, tok = load_model(config.get("model"), where, out)
    start_path = (config.get("model") or {}).get("path")
    world = build_world(env.world, **env.world_kwargs)
    targets = list(world.targets)[: env.num_targets or None]
    grpo_values = dict(config.get("grpo") or {})
    grpo_values.setdefault("reward_weights", REWARD_WEIGHTS)
    grpo_values.setdefault("max_completion_length", env.max_rounds * (env.max_question_tokens + 16))
    args = _trainer_args(GRPOConfig, grpo_values, where, "grpo", out, steps)
    peft_config = None
    if config.get("lora"):
        try:
            from peft import LoraConfig
        except ImportError:
            raise ConfigError(f"{where}: lora needs peft: pip install 'chatir-env[lora]'") from None
        try:
            peft_config = LoraConfig(task_type="CAUSAL_LM", **config["lora"])
        except TypeError as err:
            raise ConfigError(f"{where}: lora: {err}") from None
    rollout = EpisodeRollout(world, tok, env)
    eval_world = build_world(ev.world, **ev.world_kwargs) if ev.enabled else None
    callbacks = []
    if ev.enabled and ev.curve_every > 0:
        callbacks.append(_CurveCallback(eval_world, tok, ev, env, out / "curve.json"))
    trainer = GRPOTrainer(model=model, reward_funcs=REWARD_FUNCS, args=args,
                          train_dataset=Dataset.from_dict({"prompt": targets}), processing_class=tok,
                          rollout_func=rollout, peft_config=peft_config, callbacks=callbacks)
    t_train = time.time()
    trainer.train(resume_from_checkpoint=_last_checkpoint(out))
    train_seconds = time.time() - t_train
    final_model = trainer.model
    if peft_config is not None:
        final_model = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    final = out / "final"
    meta = {"stage": "grpo", "system_prompt": env.system_prompt or None, "max_question_tokens": env.max_question_tokens,
            "env": dataclasses.asdict(env), "start": start_path, "train_seconds": train_seconds, "steps": trainer.state.global_step,
            "config": config.get("_path")}
    save_questioner(final_model, tok, final, meta)
    _write_json(out / "log_history.json", trainer.state.log_history)
    plot_training(trainer.state.log_history, out / "training_curve.png",
                  _read_json(out / "curve.json") if (out / "curve.json").exists() else None, ev)
    print(f"[grpo] wrote {final}: {trainer.state.global_step} steps in {train_seconds:.0f} s")
    if ev.enabled:
        rows: dict[str, dict] = {}
        if ev.baseline and start_path:
            base, base_tok = load_model({"path": start_path}, where)
            rows["start (SFT)"] = evaluate_questioner(eval_world, lm_questioner(base, base_tok, ev, env), ev)
            print(hits_line("start", rows["start (SFT)"]))
        rows["GRPO"] = evaluate_questioner(eval_world, lm_questioner(final_model, tok, ev, env), ev)
        print(hits_line("grpo", rows["GRPO"]))
        from ..eval.report import write_results

        write_results(out / "benchmark", {k: {kk: vv for kk, vv in v.items() if kk != "example_dialogs"} for k, v in rows.items()},
                      _clean(config), title="Shapes oracle: LM questioner, SFT vs GRPO")
        _write_json(out / "results.json", {"config": _clean(config), "train_seconds": train_seconds,
                                           "total_seconds": time.time() - t_start, "steps": trainer.state.global_step,
                                           "results": rows})
    return 0


def plot_training(log_history: list[dict], path: Path, curve: list[dict] | None = None, ev: EvalConfig | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = [h for h in log_history if "reward" in h and "step" in h]
    if not logs and not curve:
        return
    panels = 2 if curve else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), dpi=110, squeeze=False)
    ax = axes[0, 0]
    steps = [h["step"] for h in logs]

    def smooth(values, k=5):
        values = np.asarray(values, dtype=float)
        return np.array([values[max(0, i - k + 1): i + 1].mean() for i in range(len(values))]) if len(values) else values

    rewards = [h["reward"] for h in logs]
    ax.plot(steps, rewards, color="tab:blue", alpha=0.25, lw=0.8)
    ax.plot(steps, smooth(rewards), color="tab:blue", label="episode return (mean; moving average)")
    hits = [h.get("rewards/hit_at_10/mean") for h in logs]
    if any(v is not None for v in hits):
        ax2 = ax.twinx()
        hits = [100 * (v or 0) for v in hits]
        ax2.plot(steps, hits, color="tab:orange", alpha=0.25, lw=0.8)
        ax2.plot(steps, smooth(hits), color="tab:orange", label="train episodes: hit@10 (%; moving average)")
        ax2.set_ylabel("hit@10 at the episode's end (%)")
        ax2.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("return")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("training rollouts (train split)")
    if curve:
        ax = axes[0, 1]
        ax.plot([p["step"] for p in curve], [p["hits@10"] for p in curve], marker="o")
        label = f"Hits@10 at round {ev.curve_rounds if ev else '?'} ({ev.curve_targets if ev else '?'} benchmark targets)"
        ax.set_ylabel(label)
        ax.set_xlabel("GRPO step")
        ax.grid(alpha=0.3)
        ax.set_title("held-out monitoring (no selection)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def main(config: dict, out_dir: str | None = None, steps: int | None = None) -> int:
    """``chatir train grpo --config FILE``: ``stage: sft`` (warm start) or ``stage: grpo`` (default)."""
    stage = config.get("stage", "grpo")
    if stage not in STAGES:
        raise ConfigError(f"{config.get('_path', 'config')}: stage must be one of {', '.join(STAGES)}, got {stage!r}")
    _threads(config)
    return run_sft(config, out_dir, steps) if stage == "sft" else run_grpo(config, out_dir, steps)

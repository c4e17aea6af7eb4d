"""GRPO (TRL) for a language-model questioner, multi-turn, on the ChatIR environment's reward.

``chatir train grpo --config configs/grpo_shapes.yaml`` (``stage: grpo``, the default) or
``--config configs/sft_shapes.yaml`` (``stage: sft``: the supervised warm start, ``chatir_env.train.sft``).
One file per stage: the rollout adapter (``grpo_rollout``: TRL's ``rollout_func`` over the batched
core), the SFT warm start (``sft``), and this one, the GRPO stage: config, warm start (an explicit step:
the SFT config named by ``model.warm_start`` runs first when ``model.path`` is missing), model, world,
trainer, save, evaluate. See docs/grpo.md.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from ..atomic import atomic_write
from ..config import ConfigError, Schema, check_name, load_config, resolve_config_path, validate
from ..target_sample import sample_targets
from ..worlds import build_world
from .grpo_rollout import EnvConfig, EpisodeRollout, question_problem  # noqa: F401  (the rollout's public names)
from .sft import (
    EvalConfig,
    ModelSection,
    SFTStageConfig,
    _last_checkpoint,
    _read_json,
    _trainer_args,
    _write_json,
    check_lora_args,
    check_trainer_args,
    evaluate_questioner,
    hits_line,
    lm_questioner,
    load_model,
    open_stage,
    run_record,
    run_sft,
    save_questioner,
)

STAGES = ("sft", "grpo")


class GRPOStageConfig(Schema):
    """``chatir train grpo`` (``stage: grpo``, the default): GRPO on the env's reward (TRL ``GRPOTrainer``)."""

    stage: Literal["grpo"] = Field("grpo", description="GRPO on whole episodes")
    threads: int = Field(1, ge=0, description="torch CPU threads (0: torch's default)")
    out_dir: str = Field("runs/grpo_shapes", description="run folder: final/, checkpoints, TensorBoard logs, results")
    model: ModelSection = Field(description="the starting model (path, with warm_start: the SFT config that makes it)")
    lora: dict[str, Any] | None = Field(None, description="peft.LoraConfig arguments (r, lora_alpha, target_modules, "
                                        "...); null: full fine-tuning. The exported final/ is merged")
    env: EnvConfig = Field(default_factory=EnvConfig, description="the training episodes")
    grpo: dict[str, Any] = Field(default_factory=dict, description="trl.GRPOConfig arguments (bf16 defaults to on only "
                                 "where CUDA supports it; gradient_checkpointing to off; max_completion_length to "
                                 "max_rounds x (max_question_tokens + 16))")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="the benchmark after training")

    @field_validator("grpo")
    @classmethod
    def _grpo_args_exist(cls, values: dict[str, Any]) -> dict[str, Any]:
        return check_trainer_args("GRPOConfig", values)

    @field_validator("lora")
    @classmethod
    def _lora_args_exist(cls, values: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_lora_args(values)


CONFIG_SCHEMAS = {"stage: grpo": GRPOStageConfig, "stage: sft": SFTStageConfig}  # for `chatir train grpo --fields`


# Reward functions: TRL logs each one's mean as rewards/<name>/mean; only episode_return has weight.
def episode_return(prompts, completions, episode_return=None, **kwargs) -> list[float]:
    return [float(x) for x in episode_return]


def hit_at_10(prompts, completions, hit=None, **kwargs) -> list[float]:
    return [float(x) for x in hit]


def invalid_turns(prompts, completions, invalid_turns=None, **kwargs) -> list[float]:
    return [float(x) for x in invalid_turns]


def repeated_turns(prompts, completions, repeated_turns=None, **kwargs) -> list[float]:
    return [float(x) for x in repeated_turns]


def unanswered_turns(prompts, completions, unanswered_turns=None, **kwargs) -> list[float]:
    return [float(x) for x in unanswered_turns]


REWARD_FUNCS = [episode_return, hit_at_10, invalid_turns, repeated_turns, unanswered_turns]
REWARD_WEIGHTS = [1.0, 0.0, 0.0, 0.0, 0.0]


# --- the stage ---------------------------------------------------------------------------------------------

def run_warm_start(model_cfg: ModelSection | dict, where: str) -> None:
    """The warm start step: run the SFT config ``model.warm_start`` when ``model.path`` does not exist yet.

    Raises:
        ConfigError: ``model.warm_start`` is not an SFT config, or the SFT run failed or did not write ``model.path``.
    """
    if not isinstance(model_cfg, ModelSection):
        model_cfg = validate(ModelSection, model_cfg, f"{where}: model")
    path, warm = model_cfg.path, model_cfg.warm_start
    if not path or not warm or Path(path).exists():
        return
    print(f"[grpo] {path} not found: running the warm start {warm} first")
    sft_config = load_config(resolve_config_path(warm))
    if sft_config.get("stage", "grpo") != "sft":
        raise ConfigError(f"{where}: model.warm_start {warm} must be an SFT config (stage: sft)")
    code = run_sft(sft_config, None, None)
    if code or not Path(path).exists():
        raise ConfigError(f"{where}: warm start {warm} did not produce {path}")


class _CurveCallback:
    """Every ``curve_every`` steps: Hits@10 of the current policy on a few benchmark targets.

    Monitoring only; no checkpoint is selected by it.
    """

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
                s = evaluate_questioner(self.world, q, self.ev.model_copy(update={'bootstrap_samples': 20}),
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
    """GRPO on whole episodes: config, warm start, model, world, trainer, save, evaluate.

    Args:
        config: the config's fields (a :class:`GRPOStageConfig` as a dict, with the CLI's ``_path``,
            ``_command`` and ``_overrides``).
        out_dir: overrides ``out_dir``.
        steps: overrides ``grpo.max_steps``.

    Returns:
        0.

    Raises:
        ConfigError: the config is not valid (the message names the file and the field), or the warm start failed.
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    cfg, where, command, out = open_stage(GRPOStageConfig, config, out_dir, steps)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    env, ev = cfg.env, cfg.eval
    t_start = time.time()
    run_warm_start(cfg.model, where)
    model, tok = load_model(cfg.model, where)
    start_path = cfg.model.path
    world = build_world(env.world, **env.world_kwargs)
    targets = sample_targets(world.targets, env.num_targets)
    grpo_values = dict(cfg.grpo)
    grpo_values.setdefault("reward_weights", REWARD_WEIGHTS)
    grpo_values.setdefault("max_completion_length", env.max_rounds * (env.max_question_tokens + 16))
    args = _trainer_args(GRPOConfig, grpo_values, where, "grpo", out, steps)
    peft_config = None
    if cfg.lora:
        try:
            from peft import LoraConfig
        except ImportError:
            raise ConfigError(f"{where}: lora needs peft: pip install 'chatir-env[lora]'") from None
        try:
            peft_config = LoraConfig(task_type="CAUSAL_LM", **cfg.lora)
        except (TypeError, ValueError) as err:
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
            "env": env.model_dump(mode="json"), "start": start_path, "train_seconds": train_seconds,
            "steps": trainer.state.global_step, "config": config.get("_path"), "command": command}
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

        record = run_record(cfg, config, command)
        without_examples = {k: {kk: vv for kk, vv in v.items() if kk != "example_dialogs"} for k, v in rows.items()}
        write_results(out / "benchmark", without_examples,
                      record, title="Shapes oracle: LM questioner, SFT vs GRPO")
        _write_json(out / "results.json", {"config": record, "train_seconds": train_seconds,
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
    """``chatir train grpo --config FILE``: ``stage: sft`` (warm start) or ``stage: grpo`` (default).

    Raises:
        ConfigError: an unknown stage, or a config its stage's schema refuses.
    """
    stage = config.get("stage", "grpo")
    check_name("stage", stage, STAGES, where=f"{config.get('_path', 'config')}: stage")
    return run_sft(config, out_dir, steps) if stage == "sft" else run_grpo(config, out_dir, steps)

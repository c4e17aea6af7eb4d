"""GRPO (TRL) for a language-model questioner, multi-turn, on the ChatIR environment's reward.

``chatir train grpo --config configs/grpo_shapes.yaml`` (``stage: grpo``, the default) or
``--config configs/sft_shapes.yaml`` (``stage: sft``: the supervised warm start on Shapes).

One GRPO rollout is one whole episode in the batched core (``EpisodeBatch``): the model writes a
question, the world's answerer answers, the answer is appended to the model's context as the next
user turn, and so on for ``env.max_rounds`` rounds. The completion is every token after the prompt,
questions and answers alike; ``env_mask`` is 1 on the tokens the model sampled and 0 on the tokens
the environment inserted (answers and chat-template glue), so only the questions are trained. The
reward of the completion is the episode's return: the sum of the env's per-round rewards
(``env.reward``, default ``log_rank_delta``) minus ``env.invalid_question_penalty`` for each turn
whose text is empty, refused by the env, or (with ``require_question_mark``) not a question; such a
turn is not sent to the world, the answer "i don't know" is appended instead, and the rank stays.

The dataset's ``prompt`` column holds target ids; the rollout renders the target's caption with the
tokenizer's chat template, so the model never sees the id. See docs/grpo.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..agents.lm import (QUESTIONER_META, LMQuestioner, chat_ids, decode_question, dialog_messages, eos_ids,
                         generate_batch)
from ..config import ConfigError, dataclass_from, load_config, resolve_config_path
from ..core import EpisodeBatch, InvalidQuestionError, validate_question
from ..rewards import RewardFn
from ..target_sample import sample_targets
from ..worlds import build_world
from ..worlds.base import World
from ..worlds.shapes_language import DONT_KNOW

STAGES = ("sft", "grpo")


@dataclass
class EnvConfig:
    """The episodes a GRPO rollout plays."""

    world: str = "shapes_oracle"
    world_kwargs: dict = field(default_factory=lambda: {"split": "train", "corpus_size": 50_000, "num_targets": None})
    num_targets: int = 0                  # train on a seeded random N of the world's targets (0: all)
    max_rounds: int = 5
    reward: str = "log_rank_delta"
    hit_bonus: float = 0.0
    invalid_question_penalty: float = 1.0  # subtracted from the return per empty / refused / non-question turn
    require_question_mark: bool = True     # text not ending in '?' counts as a non-question
    max_question_tokens: int = 16
    max_question_chars: int = 300
    system_prompt: str = ""


@dataclass
class EvalConfig:
    """The benchmark run after training (``play_episodes`` + ``summarize_record``)."""

    enabled: bool = True
    world: str = "shapes_oracle"
    world_kwargs: dict = field(default_factory=lambda: {"split": "benchmark", "corpus_size": 50_000})
    num_targets: int = 0            # a seeded random N of the benchmark targets (0: all 2,064)
    max_rounds: int = 10
    do_sample: bool = True          # sampling at temperature 1 is the policy GRPO trains
    temperature: float = 1.0
    seed: int = 0
    batch_size: int = 512
    baseline: bool = True           # also evaluate the starting model, with the same settings
    bootstrap_samples: int = 1000
    curve_every: int = 0            # every N steps, Hits@10 on curve_targets benchmark targets (0: off)
    curve_targets: int = 256
    curve_rounds: int = 5


# --- models -----------------------------------------------------------------------------------------------

def load_model(model_cfg: dict, where: str, out_dir: Path | None = None):
    """(model, tokenizer) from ``model: {path: DIR}`` or ``model: {build: shapes_tiny, config: {...}}``.

    ``warm_start: CONFIG`` with a ``path`` that does not exist yet runs that (SFT) config first.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_cfg = dict(model_cfg or {})
    unknown = set(model_cfg) - {"path", "build", "config", "warm_start", "dtype"}
    if unknown:
        raise ConfigError(f"{where}: model: unknown field(s) {', '.join(sorted(unknown))}; known: path, build, config, warm_start, dtype")
    if model_cfg.get("build"):
        if model_cfg["build"] != "shapes_tiny":
            raise ConfigError(f"{where}: model.build must be 'shapes_tiny', got {model_cfg['build']!r}")
        from .shapes_lm import build_shapes_lm, build_shapes_tokenizer

        tok = build_shapes_tokenizer()
        try:
            return build_shapes_lm(tok, **(model_cfg.get("config") or {})), tok
        except TypeError as err:
            raise ConfigError(f"{where}: model.config: {err}") from None
    path = model_cfg.get("path")
    if not path:
        raise ConfigError(f"{where}: model needs 'path' (a local HF model dir) or 'build: shapes_tiny'")
    if not Path(path).exists():
        warm = model_cfg.get("warm_start")
        if not warm:
            raise ConfigError(f"{where}: model.path {path} does not exist (no hub here: give a local dir, or warm_start: <sft config>)")
        print(f"[grpo] {path} not found: running the warm start {warm} first")
        sft_config = load_config(resolve_config_path(warm))
        code = main(sft_config)
        if code or not Path(path).exists():
            raise ConfigError(f"{where}: warm start {warm} did not produce {path}")
    dtype = getattr(torch, model_cfg.get("dtype", "float32"))
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    tok = AutoTokenizer.from_pretrained(path)
    if getattr(tok, "chat_template", None) is None:
        raise ConfigError(f"{where}: the tokenizer in {path} has no chat template")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


def save_questioner(model, tokenizer, path: Path, meta: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    (path / QUESTIONER_META).write_text(json.dumps(meta, indent=2, default=str))


# --- the multi-turn rollout ------------------------------------------------------------------------------

def question_problem(text: str, require_question_mark: bool, max_chars: int) -> str | None:
    """Why generated ``text`` is not sent to the world as a question (None: it is)."""
    try:
        validate_question(text, max_chars)
    except InvalidQuestionError as err:
        return str(err).split(":")[0]
    if require_question_mark and not text.rstrip().endswith("?"):
        return "not a question"
    return None


class EpisodeRollout:
    """TRL ``rollout_func``: ``rollout(prompts, trainer) -> dict``; ``prompts`` are target ids.

    Returns ``prompt_ids``, ``completion_ids``, ``logprobs`` (sampled tokens; 0 on env tokens),
    ``env_mask`` (1 = sampled by the model, 0 = inserted by the env), and per episode
    ``episode_return``, ``env_return``, ``invalid_turns``, ``hit`` (best rank < 10 at the end) and
    ``final_rank``, which TRL hands to the reward functions.
    """

    def __init__(self, world: World, tokenizer, env: EnvConfig):
        self.world, self.tok, self.env = world, tokenizer, env
        self.reward_fn = RewardFn(env.reward, len(world.index), env.hit_bonus)
        self._suffix_cache: dict[str, list[int]] = {}
        self.eos = eos_ids(tokenizer)

    def answer_suffix_ids(self, answer: str) -> list[int]:
        """Tokens that follow the model's end-of-turn for one answer: the user turn and the next
        assistant header (TRL's trick for tool results: render a dummy chat with and without it)."""
        if answer not in self._suffix_cache:
            dummy = [{"role": "user", "content": "dummy"}, {"role": "assistant", "content": "x"}]
            prefix = chat_ids(self.tok, dummy, add_generation_prompt=False)
            full = chat_ids(self.tok, dummy + [{"role": "user", "content": answer}], add_generation_prompt=True)
            ends = [i for i, t in enumerate(prefix) if t in self.eos]
            if ends:
                prefix = prefix[: ends[-1] + 1]
            if full[: len(prefix)] != prefix:
                raise ValueError("chat template: the dummy chat without the answer is not a prefix of the chat with it")
            self._suffix_cache[answer] = full[len(prefix):]
        return self._suffix_cache[answer]

    def __call__(self, prompts: list, trainer) -> dict[str, list]:
        model = trainer.accelerator.unwrap_model(trainer.model)
        args = trainer.args
        return self.play(model, [str(p) for p in prompts], temperature=args.temperature, top_k=args.top_k or 0,
                         top_p=args.top_p)

    def play(self, model, targets: Sequence[str], temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             do_sample: bool = True) -> dict[str, list]:
        env, n = self.env, len(targets)
        core = EpisodeBatch(self.world, n, env.max_rounds, self.reward_fn, env.max_question_chars)
        core.reset(range(n), list(targets))
        prompt_ids = [chat_ids(self.tok, dialog_messages(self.world.captions[t], (), env.system_prompt or None))
                      for t in targets]
        completion = [[] for _ in range(n)]
        mask = [[] for _ in range(n)]
        logprobs = [[] for _ in range(n)]
        env_return = np.zeros(n)
        invalid = np.zeros(n, dtype=np.int64)
        questions_log: list[list[str]] = [[] for _ in range(n)]
        answers_log: list[list[str]] = [[] for _ in range(n)]
        stops = set(eos_ids(self.tok, model))  # generation stops at any of them (tokenizer's and model's)
        eos = self.eos[0]
        for r in range(env.max_rounds):
            contexts = [p + c for p, c in zip(prompt_ids, completion)]
            new, lps = generate_batch(model, self.tok, contexts, env.max_question_tokens, do_sample, temperature, top_k, top_p)
            slots, asked = [], []
            for i, (ids, lp) in enumerate(zip(new, lps)):
                completion[i] += ids
                mask[i] += [1] * len(ids)
                logprobs[i] += lp
                if not ids or ids[-1] not in stops:  # ran out of tokens: the env closes the turn
                    completion[i].append(eos)
                    mask[i].append(0)
                    logprobs[i].append(0.0)
                text = decode_question(self.tok, ids)
                questions_log[i].append(text)
                if question_problem(text, env.require_question_mark, env.max_question_chars) is None:
                    slots.append(i)
                    asked.append(text)
                else:
                    invalid[i] += 1
            answers = [DONT_KNOW] * n
            if slots:
                result = core.step(asked, slots)
                env_return[slots] += result.rewards
                for i, a in zip(slots, result.answers):
                    answers[i] = a
            for i in range(n):
                answers_log[i].append(answers[i])
            if r < env.max_rounds - 1:
                for i in range(n):
                    suffix = self.answer_suffix_ids(answers[i])
                    completion[i] += suffix
                    mask[i] += [0] * len(suffix)
                    logprobs[i] += [0.0] * len(suffix)
        episode_return = env_return - env.invalid_question_penalty * invalid
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": completion,
            "logprobs": logprobs,
            "env_mask": mask,
            "episode_return": episode_return.tolist(),
            "env_return": env_return.tolist(),
            "invalid_turns": invalid.tolist(),
            "hit": (core.best_ranks < 10).astype(float).tolist(),
            "final_rank": core.ranks.tolist(),
            "questions": questions_log,
            "answers": answers_log,
        }


# Reward functions: TRL logs each one's mean as rewards/<name>/mean; only episode_return has weight.
def episode_return(prompts, completions, episode_return=None, **kwargs) -> list[float]:
    return [float(x) for x in episode_return]


def hit_at_10(prompts, completions, hit=None, **kwargs) -> list[float]:
    return [float(x) for x in hit]


def invalid_turns(prompts, completions, invalid_turns=None, **kwargs) -> list[float]:
    return [float(x) for x in invalid_turns]


REWARD_FUNCS = [episode_return, hit_at_10, invalid_turns]
REWARD_WEIGHTS = [1.0, 0.0, 0.0]


# --- evaluation --------------------------------------------------------------------------------------------

def evaluate_questioner(world: World, questioner, ev: EvalConfig, num_targets: int | None = None,
                        max_rounds: int | None = None) -> dict:
    from ..eval.report import summarize_record
    from ..eval.runner import play_episodes

    n = num_targets if num_targets is not None else ev.num_targets
    targets = sample_targets(world.targets, n, ev.seed)
    t0 = time.time()
    record = play_episodes(world, questioner, targets=targets, max_rounds=max_rounds or ev.max_rounds,
                           batch_size=ev.batch_size, progress=False)
    summary = summarize_record(record, bootstrap_samples=ev.bootstrap_samples)
    summary["eval_seconds"] = time.time() - t0
    summary["example_dialogs"] = [d.text() for d in record.dialogs[:3]]
    return summary


def lm_questioner(model, tokenizer, ev: EvalConfig, env: EnvConfig | None = None) -> LMQuestioner:
    return LMQuestioner(model, tokenizer=tokenizer, system_prompt=(env.system_prompt if env else "") or None,
                        do_sample=ev.do_sample, temperature=ev.temperature,
                        max_new_tokens=env.max_question_tokens if env else 16, batch_size=ev.batch_size, seed=ev.seed)


def hits_line(name: str, s: dict, rounds=(0, 5, 10)) -> str:
    lo, hi = s["hits@10_ci95"]
    cells = "  ".join(f"R{r} {s['hits@10'][r]:.1f} [{lo[r]:.1f}, {hi[r]:.1f}]" for r in rounds if r <= s["rounds"])
    return f"{name}: Hits@10 {cells}; invalid {s['invalid_questions']}, repeated {s['repeated_question_rate']:.1f}%"


# --- stages --------------------------------------------------------------------------------------------------

def _sections(config: dict, where: str, allowed: set[str]) -> None:
    unknown = set(config) - allowed - {"_path"}
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(allowed))}")


def _trainer_args(cls, values: dict, where: str, section: str, out: Path, steps: int | None):
    values = dict(values or {})
    values.setdefault("report_to", ["tensorboard"])
    values.setdefault("bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    values.setdefault("save_total_limit", 2)
    values.setdefault("gradient_checkpointing", False)  # TRL turns it on by default; small models only lose speed
    if steps:
        values["max_steps"] = steps
    try:
        return cls(output_dir=str(out), **values)
    except TypeError as err:
        raise ConfigError(f"{where}: {section}: {err}") from None


def _last_checkpoint(out: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(out)) if out.is_dir() else None


def _threads(config: dict) -> None:
    threads = int(config.get("threads", 1))
    if threads > 0:
        torch.set_num_threads(threads)


def run_sft(config: dict, out_dir: str | None, steps: int | None) -> int:
    """Supervised warm start on Shapes: the LM learns to ask pool questions given the dialog so far."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from .shapes_lm import SAMPLINGS, shapes_sft_examples

    where = config.get("_path", "config")
    _sections(config, where, {"stage", "threads", "out_dir", "model", "data", "sft", "env", "eval"})
    out = Path(out_dir or config.get("out_dir") or "runs/sft_shapes")
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(out / "tb"))
    env = dataclass_from(EnvConfig, config.get("env"), f"{where}: env")
    ev = dataclass_from(EvalConfig, config.get("eval"), f"{where}: eval")
    data = {"num_examples": 20_000, "max_rounds": 10, "seed": 0, "split": "train", "corpus_size": 50_000,
            "sampling": "uniform", **(config.get("data") or {})}
    if data["sampling"] not in SAMPLINGS:
        raise ConfigError(f"{where}: data.sampling must be one of {', '.join(SAMPLINGS)}")
    t0 = time.time()
    model, tok = load_model(config.get("model"), where, out)
    try:
        rows = shapes_sft_examples(system_prompt=env.system_prompt or None, **data)
    except TypeError as err:
        raise ConfigError(f"{where}: data: {err}") from None
    args = _trainer_args(SFTConfig, config.get("sft"), where, "sft", out, steps)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    trainer.train(resume_from_checkpoint=_last_checkpoint(out))
    train_seconds = time.time() - t0
    final = out / "final"
    meta = {"stage": "sft", "system_prompt": env.system_prompt or None, "max_question_tokens": env.max_question_tokens,
            "data": data, "train_seconds": train_seconds, "config": config.get("_path")}
    save_questioner(trainer.model, tok, final, meta)
    _write_json(out / "log_history.json", trainer.state.log_history)
    print(f"[sft] wrote {final} in {train_seconds:.0f} s")
    if ev.enabled:
        world = build_world(ev.world, **ev.world_kwargs)
        summary = evaluate_questioner(world, lm_questioner(trainer.model, tok, ev, env), ev)
        print(hits_line("sft", summary))
        _write_json(out / "results.json", {"config": _clean(config), "train_seconds": train_seconds, "results": {"sft": summary}})
    return 0


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
    model, tok = load_model(config.get("model"), where, out)
    start_path = (config.get("model") or {}).get("path")
    world = build_world(env.world, **env.world_kwargs)
    targets = sample_targets(world.targets, env.num_targets)
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
    fig.savefig(path)
    plt.close(fig)


def _clean(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "_path"} | {"config_path": config.get("_path")}


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable))
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def main(config: dict, out_dir: str | None = None, steps: int | None = None) -> int:
    """``chatir train grpo --config FILE``: ``stage: sft`` (warm start) or ``stage: grpo`` (default)."""
    stage = config.get("stage", "grpo")
    if stage not in STAGES:
        raise ConfigError(f"{config.get('_path', 'config')}: stage must be one of {', '.join(STAGES)}, got {stage!r}")
    _threads(config)
    return run_sft(config, out_dir, steps) if stage == "sft" else run_grpo(config, out_dir, steps)

"""Supervised warm start (TRL ``SFTTrainer``) of a language-model questioner on Shapes, and the model,
evaluation and file helpers the GRPO stage (``chatir_env.train.grpo``) shares.

``chatir train grpo --config configs/sft_shapes.yaml`` (``stage: sft``) runs ``run_sft``: config, model,
data, trainer, save, evaluate. See docs/grpo.md.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..agents.lm import QUESTIONER_META, LMQuestioner
from ..atomic import atomic_write
from ..config import ConfigError, dataclass_from
from ..worlds import build_world
from ..worlds.base import World
from .grpo_rollout import EnvConfig


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

    ``warm_start: CONFIG`` names the SFT config that makes ``path``; ``run_warm_start`` runs it when ``path``
    is missing (the GRPO stage does so before loading).
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
        hint = "run the warm start first (run_warm_start)" if model_cfg.get("warm_start") else "give a local dir, or warm_start: <sft config>"
        raise ConfigError(f"{where}: model.path {path} does not exist (no hub here: {hint})")
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
    atomic_write(path / QUESTIONER_META, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2, default=str)))


# --- evaluation --------------------------------------------------------------------------------------------

def evaluate_questioner(world: World, questioner, ev: EvalConfig, num_targets: int | None = None,
                        max_rounds: int | None = None) -> dict:
    from ..eval.report import summarize_record
    from ..eval.runner import play_episodes

    n = num_targets if num_targets is not None else ev.num_targets
    targets = None
    if n and n < len(world.targets):
        # a seeded random subset: the first ids are easier (ties rank lower corpus indices first)
        pick = np.random.default_rng(ev.seed).choice(len(world.targets), n, replace=False)
        targets = [world.targets[i] for i in sorted(pick)]
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


# --- config and file helpers --------------------------------------------------------------------------------

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


def _clean(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "_path"} | {"config_path": config.get("_path")}


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=_jsonable)))


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


# --- the stage ---------------------------------------------------------------------------------------------

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

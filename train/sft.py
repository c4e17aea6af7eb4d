"""Supervised warm start (TRL ``SFTTrainer``) of a language-model questioner.

Also the config sections, model, evaluation and file helpers the GRPO stage (``chatir_env.train.grpo``) shares.

``chatir train grpo --config configs/sft_shapes.yaml`` (``stage: sft``) runs ``run_sft``: config, model,
data, trainer, save, evaluate. The rows are Shapes pool questions (``data.source: shapes``, the default) or
VisDial train's human questions (``data.source: visdial_train``, configs/sft_visdial_train.yaml). See
docs/grpo.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from ..agents.lm import QUESTIONER_META, LMQuestioner
from ..atomic import atomic_write
from ..config import ConfigError, Schema, check_name, validate
from ..target_sample import sample_targets
from ..worlds import build_world, check_world_args
from ..worlds.base import World
from ..worlds.schema import WorldSection
from .cli import recorded_command
from .grpo_rollout import EnvConfig


class EvalConfig(WorldSection):
    """The benchmark run after training (``play_episodes`` + ``summarize_record``): the ``eval:`` section."""

    enabled: bool = Field(True, description="run the benchmark after training")
    world: str = Field("shapes_oracle", description="registered world of the benchmark")
    world_kwargs: dict[str, Any] = Field(default_factory=lambda: {"split": "benchmark", "corpus_size": 50_000},
                                         description="the benchmark world's keyword arguments (`chatir worlds`)")
    num_targets: int = Field(0, ge=0, description="a seeded random N of the benchmark targets (0: all)")
    max_rounds: int = Field(10, ge=1, description="questions per benchmark episode")
    do_sample: bool = Field(True, description="sample the questions (the policy GRPO trains); false: greedy")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    seed: int = Field(0, ge=0, description="seed of the target subset and the sampling")
    batch_size: int = Field(512, ge=1, description="episodes played as one batch")
    baseline: bool = Field(True, description="also evaluate the starting model, with the same settings (GRPO stage)")
    bootstrap_samples: int = Field(1000, ge=1, description="bootstrap resamples of the 95% intervals")
    curve_every: int = Field(0, ge=0, description="every N GRPO steps, Hits@10 on curve_targets targets (0: off)")
    curve_targets: int = Field(256, ge=1, description="benchmark targets of the monitoring curve")
    curve_rounds: int = Field(5, ge=1, description="the round whose Hits@10 the monitoring curve plots")


class ModelSection(Schema):
    """The model trained: a local Hugging Face causal LM, or the tiny Shapes LM built from scratch."""

    path: str | None = Field(None, description="a local HF causal LM dir with a chat-template tokenizer (no hub here)")
    build: Literal["shapes_tiny"] | None = Field(None, description="build a model instead of loading one: shapes_tiny "
                                                                   "(chatir_env.train.shapes_lm)")
    config: dict[str, Any] = Field(default_factory=dict, description="with build: LlamaConfig fields (hidden_size, "
                                   "num_hidden_layers, ...) and seed")
    warm_start: str | None = Field(None, description="an SFT config (stage: sft) run first when `path` does not exist")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="dtype `path` is loaded in")

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSection":
        if not self.path and not self.build:
            raise ValueError("needs 'path' (a local HF model dir) or 'build: shapes_tiny'")
        return self


class SFTDataSection(Schema):
    """The SFT rows: Shapes pool questions (the default) or VisDial train's human questions."""

    source: Literal["shapes", "visdial_train"] = Field(
        "shapes", description="shapes: chatir_env.train.shapes_lm.shapes_sft_examples; visdial_train: the human "
                              "questions of a VisDial training world's train split (chatir_env.train.visdial_sft)")
    num_examples: int | None = Field(20_000, ge=1, description="rows drawn; null (visdial_train only): every turn of "
                                                                "every train-split dialog")
    max_rounds: int = Field(10, ge=1, description="turns considered per dialog")
    seed: int = Field(0, ge=0, description="seed of the draw")
    split: Literal["train"] = Field("train", description="shapes: the scenes' split (never the benchmark's)")
    corpus_size: int = Field(50_000, ge=10, description="shapes: scenes drawn from")
    sampling: Literal["uniform", "kind_balanced"] = Field("uniform", description="shapes: the next question, uniform "
                                                          "over the pool or over question kinds first")
    world: Literal["visdial_train_replay", "visdial_train"] = Field(
        "visdial_train_replay", description="visdial_train: the training world read (replay loads no answerer model)")
    world_kwargs: dict[str, Any] = Field(default_factory=dict, description="visdial_train: the world's keyword "
                                         "arguments (train_file, index, retriever_model, benchmark_index, ...); "
                                         "the split is always train")

    @model_validator(mode="after")
    def _fields_of_the_source(self) -> "SFTDataSection":
        other = {"shapes": ("world", "world_kwargs"), "visdial_train": ("split", "corpus_size", "sampling")}[self.source]
        given = [name for name in other if name in self.model_fields_set]
        if given:
            raise ValueError(f"{', '.join(given)}: not a field of source {self.source!r}")
        if self.source == "shapes" and self.num_examples is None:
            raise ValueError("num_examples: source 'shapes' draws a number of rows, null is for visdial_train")
        if self.source == "visdial_train":
            if not self.world_kwargs.get("train_file"):
                raise ValueError("world_kwargs: source 'visdial_train' needs train_file (and the world's index)")
            check_world_args(self.world, self.world_kwargs, reserved=("split",))
        return self

    def rows(self, system_prompt: str | None) -> list[dict]:
        """The prompt-completion chats of this data source."""
        if self.source == "visdial_train":
            from .visdial_sft import visdial_sft_examples

            return visdial_sft_examples(self.world_kwargs, self.num_examples, self.max_rounds, self.seed, system_prompt,
                                        world=self.world)
        from .shapes_lm import shapes_sft_examples

        return shapes_sft_examples(self.num_examples, self.max_rounds, self.seed, self.split, self.corpus_size,
                                   self.sampling, system_prompt)


def check_trainer_args(trainer_config: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` if each key is a field of TRL's ``trainer_config`` dataclass (``GRPOConfig``, ``SFTConfig``).

    Raises:
        UnknownNameError: a key that is not a field, with the closest one; its values are TRL's to check.
    """
    import trl

    fields = [f.name for f in dataclasses.fields(getattr(trl, trainer_config)) if f.init and f.name != "output_dir"]
    for key in values:
        check_name(f"trl.{trainer_config} argument", key, fields)
    return values


def check_lora_args(values: dict[str, Any] | None) -> dict[str, Any] | None:
    """``values`` if each key is a field of ``peft.LoraConfig`` (unchecked where peft is not installed)."""
    try:
        from peft import LoraConfig
    except ImportError:
        return values
    fields = [f.name for f in dataclasses.fields(LoraConfig) if f.init and f.name != "task_type"]
    for key in values or {}:
        check_name("peft.LoraConfig argument", key, fields)
    return values


class SFTStageConfig(Schema):
    """``chatir train grpo`` with ``stage: sft``: the supervised warm start (TRL ``SFTTrainer``)."""

    stage: Literal["sft"] = Field("sft", description="the supervised warm start")
    threads: int = Field(1, ge=0, description="torch CPU threads (0: torch's default)")
    out_dir: str = Field("runs/sft_shapes", description="run folder: final/, checkpoints, TensorBoard logs, results")
    model: ModelSection = Field(description="the model trained")
    data: SFTDataSection = Field(default_factory=SFTDataSection, description="the SFT rows")
    sft: dict[str, Any] = Field(default_factory=dict, description="trl.SFTConfig arguments (bf16 defaults to on only "
                                "where CUDA supports it; gradient_checkpointing to off)")
    env: EnvConfig = Field(default_factory=EnvConfig, description="the prompt the model will see: system_prompt, "
                                                                  "max_question_tokens")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="the benchmark after training")

    @field_validator("sft")
    @classmethod
    def _sft_args_exist(cls, values: dict[str, Any]) -> dict[str, Any]:
        return check_trainer_args("SFTConfig", values)


# --- models -----------------------------------------------------------------------------------------------

def load_model(model_cfg: ModelSection | dict, where: str):
    """(model, tokenizer) from ``model: {path: DIR}`` or ``model: {build: shapes_tiny, config: {...}}``.

    ``warm_start: CONFIG`` names the SFT config that makes ``path``; ``run_warm_start`` runs it when ``path``
    is missing (the GRPO stage does so before loading).

    Raises:
        ConfigError: the section is not valid, ``path`` does not exist, or its tokenizer has no chat template.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not isinstance(model_cfg, ModelSection):
        model_cfg = validate(ModelSection, model_cfg, f"{where}: model")
    if model_cfg.build:
        from .shapes_lm import build_shapes_lm, build_shapes_tokenizer

        tok = build_shapes_tokenizer()
        try:
            return build_shapes_lm(tok, **model_cfg.config), tok
        except TypeError as err:
            raise ConfigError(f"{where}: model.config: {err}") from None
    path = model_cfg.path
    if not Path(path).exists():
        hint = ("run the warm start first (run_warm_start)" if model_cfg.warm_start
                else "give a local dir, or warm_start: <sft config>")
        raise ConfigError(f"{where}: model.path {path} does not exist (no hub here: {hint})")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, model_cfg.dtype))
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


# --- config and file helpers --------------------------------------------------------------------------------

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
    except (TypeError, ValueError) as err:  # TRL checks its own values
        raise ConfigError(f"{where}: {section}: {err}") from None


def _last_checkpoint(out: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(out)) if out.is_dir() else None


def _threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def open_stage(schema: type[Schema], config: dict, out_dir: str | None, steps: int | None):
    """What every LM stage does first: validate its config, set torch's threads and TensorBoard's folder.

    Returns:
        ``(cfg, where, command, out)``: the validated config, the config file's name for error
        messages, the command line recorded with the results, and the run folder.
    """
    cfg = validate(schema, config)
    where = config.get("_path", "config")
    command = recorded_command("grpo", config, out_dir, steps)  # `chatir train grpo` runs both stages
    _threads(cfg.threads)
    out = Path(out_dir or cfg.out_dir)
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(out / "tb"))
    return cfg, where, command, out



def run_record(cfg: Schema, config: dict, command: str) -> dict:
    """The validated config as it ran, with the file it came from and the command: what results.json keeps."""
    return {**cfg.model_dump(mode="json"), "config_path": config.get("_path"), "command": command}


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
    """Supervised warm start: the LM learns to ask the next question given the dialog so far.

    The questions are Shapes pool questions, or VisDial train's human questions with ``data.source: visdial_train``.

    Args:
        config: the config's fields (an :class:`SFTStageConfig` as a dict, with the CLI's ``_path``,
            ``_command`` and ``_overrides``).
        out_dir: overrides ``out_dir``.
        steps: overrides ``sft.max_steps``.

    Returns:
        0.

    Raises:
        ConfigError: the config is not valid (the message names the file and the field).
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cfg, where, command, out = open_stage(SFTStageConfig, config, out_dir, steps)
    env, ev = cfg.env, cfg.eval
    t0 = time.time()
    model, tok = load_model(cfg.model, where)
    rows = cfg.data.rows(env.system_prompt or None)
    args = _trainer_args(SFTConfig, cfg.sft, where, "sft", out, steps)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    trainer.train(resume_from_checkpoint=_last_checkpoint(out))
    train_seconds = time.time() - t0
    final = out / "final"
    meta = {"stage": "sft", "system_prompt": env.system_prompt or None, "max_question_tokens": env.max_question_tokens,
            "data": cfg.data.model_dump(mode="json"), "rows": len(rows), "train_seconds": train_seconds,
            "config": config.get("_path"), "command": command}
    save_questioner(trainer.model, tok, final, meta)
    _write_json(out / "log_history.json", trainer.state.log_history)
    print(f"[sft] wrote {final} in {train_seconds:.0f} s")
    if ev.enabled:
        world = build_world(ev.world, **ev.world_kwargs)
        summary = evaluate_questioner(world, lm_questioner(trainer.model, tok, ev, env), ev)
        print(hits_line("sft", summary))
        _write_json(out / "results.json", {"config": run_record(cfg, config, command), "train_seconds": train_seconds,
                                           "results": {"sft": summary}})
    return 0

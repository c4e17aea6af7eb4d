"""`chatir benchmark --config FILE`: several questioners on the same targets, one table and one plot.

Config (YAML)::

    name: shapes_demo
    max_rounds: 10
    num_targets: 2064            # a seeded random sample of n benchmark targets of each world (null: all)
    target_seed: 0               # the sample's seed (recorded in results.json with the ids' SHA-256)
    worlds:                      # each: a label, a registered world, and its keyword arguments
      - {name: learned, world: shapes, args: {split: benchmark}}
      - {name: exact, world: shapes_oracle, args: {split: benchmark, answer_noise: 0.0}}
    questioners:                 # each: a label, a short name or package.module:Class, its arguments
      - {name: random, questioner: random, args: {seed: 0}}
      - {name: ppo, questioner: policy, args: {policy: "package:agents/policies/ppo_shapes_oracle.pt"}, worlds: [exact]}
    out_dir: runs/shapes_demo

Every key is checked before anything runs (:class:`BenchmarkConfig`): an unknown key, world, world
argument or questioner short name is a one-line error naming it. A questioner that raises while it
runs is reported and skipped; the others' results are still written. Results are rewritten
(atomically) after every run, so an interrupted benchmark keeps what it finished; the plot is drawn
once, when all runs are done.

A world with splits (the Shapes worlds) is built on its ``benchmark`` split unless its ``args`` name
another; what each world was built with (``world.config``, split included) is recorded in results.json
under ``config.world_configs``. Each world is built once and shared by every questioner run on it.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..config import ConfigError, Schema, check_name, load_config, schema_help, validate


def _none_is_empty(value: Any) -> Any:
    return {} if value is None else value  # `args:` left empty in YAML


class WorldEntry(Schema):
    """One world of the benchmark."""

    name: str | None = Field(None, description="label in the table (default: the world's name)")
    world: str = Field(description="a registered world (`chatir worlds` lists them with their arguments)")
    args: dict[str, Any] = Field(default_factory=dict, description="the world's keyword arguments")

    _args_default = field_validator("args", mode="before")(_none_is_empty)

    @field_validator("world")
    @classmethod
    def _world_exists(cls, world: str) -> str:
        from ..worlds import world_names

        return check_name("world", world, world_names())

    @field_validator("args")
    @classmethod
    def _args_exist(cls, args: dict, info: ValidationInfo) -> dict:
        from ..worlds import check_world_args

        if "world" in info.data:
            check_world_args(info.data["world"], args)
        return args

    @property
    def label(self) -> str:
        return self.name or self.world


class QuestionerEntry(Schema):
    """One questioner of the benchmark."""

    name: str | None = Field(None, description="label in the table (default: the questioner's name)")
    questioner: str = Field(description="a short name (chatir_env.agents.QUESTIONERS) or an import path package.module:Class")
    args: dict[str, Any] = Field(default_factory=dict, description="the questioner's keyword arguments; a value "
                                 "'package:relative/path' points into the installed package")
    worlds: list[str] | None = Field(None, description="labels of the worlds it runs in (default: all)")

    _args_default = field_validator("args", mode="before")(_none_is_empty)

    @field_validator("questioner")
    @classmethod
    def _questioner_exists(cls, questioner: str) -> str:
        from ..agents import IMPORT_PATH_NOTE, QUESTIONERS

        if ":" in questioner:  # an import path: imported when it runs, so one broken class costs only its row
            return questioner
        return check_name("questioner", questioner, list(QUESTIONERS), note=IMPORT_PATH_NOTE)

    @property
    def label(self) -> str:
        return self.name or self.questioner


class BenchmarkConfig(Schema):
    """``chatir benchmark``: several questioners on several worlds' benchmark targets."""

    name: str = Field("benchmark", description="the benchmark's title")
    max_rounds: int = Field(10, ge=1, description="questions per episode")
    num_targets: int | None = Field(None, ge=1, description="a seeded random sample of n benchmark targets of each world "
                                    "(null: all)")
    target_seed: int = Field(0, ge=0, description="the seed of the num_targets sample (recorded with the ids' SHA-256)")
    worlds: list[WorldEntry] = Field(min_length=1, description="the worlds, each a label, a world and its arguments")
    questioners: list[QuestionerEntry] = Field(min_length=1, description="the questioners, each a label, a questioner "
                                               "and its arguments")
    out_dir: str | None = Field(None, description="where results go (default runs/<name>)")

    @model_validator(mode="after")
    def _labels_are_consistent(self) -> "BenchmarkConfig":
        labels = [w.label for w in self.worlds]
        if len(set(labels)) < len(labels):
            raise ValueError(f"worlds: two worlds share a label ({', '.join(labels)}); give each a distinct name")
        for i, q in enumerate(self.questioners):
            for label in q.worlds or ():
                check_name("world label", label, labels, where=f"questioners[{i}].worlds")
        for label in labels:
            runs = [q.label for q in self.questioners if not q.worlds or label in q.worlds]
            if len(set(runs)) < len(runs):
                raise ValueError(f"questioners: two runs in world {label!r} share a label ({', '.join(runs)}); "
                                 "give each a distinct name")
        return self


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="benchmark YAML (a path, or a packaged config name such as shapes_demo)")
    parser.add_argument("--out-dir", help="override the config's out_dir")
    parser.add_argument("--num-targets", type=int,
                        help="override num_targets: a seeded random sample (e.g. a quick look with 200)")
    parser.add_argument("--target-seed", type=int, help="override target_seed, the seed of the --num-targets sample")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    parser.add_argument("--fields", action="store_true",
                        help="list the config's fields (default and meaning of each) and exit")


def resolve_args(args: dict) -> dict:
    """``package:relative/path`` values point into the installed chatir_env package."""
    root = Path(__file__).resolve().parent.parent
    out = {}
    for key, value in (args or {}).items():
        if isinstance(value, str) and value.startswith("package:"):
            value = str(root / value.removeprefix("package:"))
        out[key] = value
    return out


def world_args(world: str, args: dict | None) -> dict:
    """A config world's keyword arguments, with ``split: benchmark`` for worlds that have splits unless named."""
    from ..worlds.shapes import SPLIT_WORLDS

    args = dict(args or {})
    if world in SPLIT_WORLDS:
        args.setdefault("split", "benchmark")
    return args


def run(args: argparse.Namespace) -> int:
    if args.fields:
        print("\n".join(schema_help(BenchmarkConfig)))
        return 0
    if not args.config:
        raise ConfigError("--config is required (a YAML path, or the name of a packaged config)")
    config = load_config(args.config)
    origins = config.setdefault("_overrides", {})  # a bad value from an option is blamed on the option
    if args.out_dir:
        config["out_dir"], origins["out_dir"] = args.out_dir, f"--out-dir {args.out_dir}"
    if args.num_targets is not None:
        config["num_targets"], origins["num_targets"] = args.num_targets, f"--num-targets {args.num_targets}"
    if args.target_seed is not None:
        config["target_seed"], origins["target_seed"] = args.target_seed, f"--target-seed {args.target_seed}"
    return run_benchmark(config, bootstrap=args.bootstrap)


def run_benchmark(config: dict, bootstrap: int = 1000, progress: bool = True) -> int:
    """Run every questioner of ``config`` (a :class:`BenchmarkConfig` as a dict) on its worlds.

    Returns:
        0, or 1 when a questioner failed (the others' results are written all the same).

    Raises:
        ConfigError: the config does not validate (before anything runs).
    """
    from ..agents import make_questioner
    from ..target_sample import sample_record, sample_targets
    from ..worlds import build_world
    from .report import format_table, summarize_record, write_results
    from .runner import play_episodes

    cfg = validate(BenchmarkConfig, config)
    recorded = {**cfg.model_dump(), **{k: v for k, v in config.items() if k == "_path"}}
    out_dir = Path(cfg.out_dir or f"runs/{cfg.name}")
    samples: dict[str, dict] = {}
    rows: dict[str, dict] = {}
    failures: dict[str, str] = {}
    world_configs: dict[str, dict] = {}
    for w in cfg.worlds:
        t0 = time.time()
        world = build_world(w.world, **world_args(w.world, w.args))
        world_configs[w.label] = world.config
        # A random sample, never the first n: targets are in corpus order and ties go to the lower index.
        targets = sample_targets(world.targets, cfg.num_targets, cfg.target_seed)
        samples[w.label] = sample_record(world.targets, targets, cfg.target_seed)
        print(f"[{w.label}] world {w.world}: {len(world.index)} corpus items, {len(targets)} targets "
              f"({time.time() - t0:.1f}s to build)")
        for q in cfg.questioners:
            if q.worlds and w.label not in q.worlds:
                continue
            run_name = f"{w.label}/{q.label}"
            try:
                questioner = make_questioner(q.questioner, **resolve_args(q.args))
                if hasattr(questioner, "bind_world"):
                    questioner.bind_world(world)
                t0 = time.time()
                record = play_episodes(world, questioner, targets, cfg.max_rounds, progress=progress, desc=run_name)
                rows[run_name] = summarize_record(record, bootstrap_samples=bootstrap)
                rows[run_name]["seconds"] = round(time.time() - t0, 1)
                hits = rows[run_name]["hits@10"]  # each run's result as soon as it is in, not only in the final table
                print(f"[{run_name}] Hits@10 {hits[0]:.1f} at round 0, {hits[-1]:.1f} at round {len(hits) - 1}; "
                      f"BRI {rows[run_name].get('bri', float('nan')):.3f} ({rows[run_name]['seconds']} s)")
                stats = getattr(questioner, "stats", None)
                if isinstance(stats, dict):  # e.g. an LLM questioner's retries, fallbacks, backend errors
                    rows[run_name]["questioner_stats"] = json.loads(json.dumps(stats, default=str))
                    if stats.get("fallbacks") or stats.get("backend_errors"):
                        print(f"[{run_name}] questioner stats: {stats.get('fallbacks', 0)} fallback questions, "
                              f"{stats.get('backend_errors', 0)} backend errors (in results.json)")
            except Exception as err:  # one broken questioner must not cost the others' results
                failures[run_name] = f"{type(err).__name__}: {err}"
                print(f"[{run_name}] FAILED: {failures[run_name]}")
                if not isinstance(err, ConfigError):  # a config mistake is its message; a crash needs its trace
                    traceback.print_exc()
            # The figures after every run, so an interrupted benchmark keeps what it finished; the plot once, at the end.
            write_results(out_dir, rows, {**recorded, "world_configs": world_configs, "target_samples": samples,
                                          "failures": failures}, plot=False)
    write_results(out_dir, rows, {**recorded, "world_configs": world_configs, "target_samples": samples, "failures": failures},
                  title=cfg.name)
    print()
    print(format_table(rows))
    print(f"\nwrote {out_dir}/results.json, hits_at_10.csv, hits_at_10.png")
    if failures:
        print("failed runs: " + json.dumps(failures, indent=2))
        return 1
    return 0

"""`chatir train {retriever,ppo,grpo} --config FILE`: every training run is one config.

The run's directory (``out_dir`` in the config) receives the config, TensorBoard logs, checkpoints
and results; rerunning the same command resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
import importlib
import shlex

TRAINERS = {
    "retriever": ("chatir_env.train.train_retriever", "dialog-retrieval encoder (Shapes dual encoder or BLIP text side)"),
    "ppo": ("chatir_env.train.ppo", "pooled questioner with MaskablePPO"),
    "grpo": ("chatir_env.train.grpo", "language-model questioner with TRL GRPO"),
}

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=sorted(TRAINERS), help="; ".join(f"{k}: {v[1]}" for k, v in TRAINERS.items()))
    parser.add_argument("--config", help="YAML config (a path, or the name of a packaged config); required unless --fields")
    parser.add_argument("--out-dir", help="override the config's out_dir")
    parser.add_argument("--steps", type=int, help="override the number of training steps (smoke runs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (repeatable; a dotted key reaches into a section, e.g. "
                             "--set reward=rank_delta --set world_kwargs.answer_noise=0.1); values are read as YAML")
    parser.add_argument("--fields", action="store_true",
                        help="list the config's fields (default and meaning of each) and exit")


def command_line(args: argparse.Namespace) -> str:
    """The command as given, with every option that changes the run, to be recorded beside its results."""
    words = ["chatir", "train", args.what, "--config", str(args.config)]
    for item in args.set:
        words += ["--set", item]
    words += ["--steps", str(args.steps)] if args.steps else []
    words += ["--out-dir", args.out_dir] if args.out_dir else []
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from chatir_env.config import ConfigError, apply_overrides, load_config, parse_key_values, schema_help

    module = importlib.import_module(TRAINERS[args.what][0])
    if args.fields:
        schemas = getattr(module, "CONFIG_SCHEMAS", None)
        if not schemas:
            raise ConfigError(f"--fields: the {args.what} trainer's config is described in its module's docstring")
        for title, schema in schemas.items():
            print(f"{title}:\n" + "\n".join("  " + line for line in schema_help(schema)))
        return 0
    if not args.config:
        raise ConfigError("--config is required (a YAML path, or the name of a packaged config)")
    config = apply_overrides(load_config(args.config), parse_key_values(args.set, option="--set"))
    config["_command"] = command_line(args)  # recorded beside the run's outputs
    return module.main(config, out_dir=args.out_dir, steps=args.steps) or 0


def recorded_command(trainer: str, config: dict, out_dir: str | None, steps: int | None) -> str:
    """The command that runs ``config``: ``config["_command"]`` as the CLI recorded it, else rebuilt.

    Args:
        trainer: ``ppo``, ``grpo`` or ``retriever``.
        config: the loaded config, with the CLI's ``_command`` / ``_overrides`` / ``_path`` when present.
        out_dir: the ``--out-dir`` override, if any.
        steps: the ``--steps`` override, if any.

    Returns:
        A shell-quoted command line.
    """
    if config.get("_command"):
        return str(config["_command"])
    words = ["chatir", "train", trainer, "--config", str(config.get("_path", "<config>"))]
    for origin in (config.get("_overrides") or {}).values():
        option, _, item = origin.partition(" ")
        words += [option, item]
    words += ["--steps", str(steps)] if steps else []
    words += ["--out-dir", out_dir] if out_dir else []
    return shlex.join(words)

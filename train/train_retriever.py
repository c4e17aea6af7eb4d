"""Train a dialog-retrieval encoder from a config (``world: shapes`` here; ``world: visdial`` for BLIP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import save_file

from ..config import ConfigError, dataclass_from
from .retriever import RetrieverTrainConfig, train_retriever


def main(config: dict, out_dir: str | None = None, steps: int | None = None) -> int:
    world = config.get("world")
    if world == "shapes":
        return train_shapes(config, out_dir, steps)
    if world == "visdial":
        from .visdial_retriever import train_visdial  # the BLIP text side (see configs/retriever_visdial_blip.yaml)

        return train_visdial(config, out_dir, steps)
    raise ConfigError(f"{config.get('_path')}: field 'world' must be 'shapes' or 'visdial', got {world!r}")


def train_shapes(config: dict, out_dir: str | None, steps: int | None) -> int:
    from ..worlds.shapes_retrievers import ShapesDualEncoder, state_dict_digest
    from ..worlds.shapes_training import ShapesDialogSampler, ShapesRetrievalProbe

    where = config.get("_path", "config")
    train_cfg = dataclass_from(RetrieverTrainConfig, config.get("train"), f"{where}: train")
    if out_dir:
        train_cfg.out_dir = out_dir
    if steps:
        train_cfg.steps = steps
    try:
        model = ShapesDualEncoder(**config.get("model", {}))
        sampler = ShapesDialogSampler(seed=train_cfg.seed, image_size=model.config["image_size"], **config.get("data", {}))
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None
    probe = ShapesRetrievalProbe(image_size=model.config["image_size"])
    result = train_retriever(model, sampler, train_cfg, evaluate=probe)
    print(json.dumps(result))
    export = config.get("export")
    if export:
        path = Path(export if not out_dir else Path(train_cfg.out_dir) / "shapes_dual")
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        tmp = path.with_name(f".{path.name}.tmp.safetensors")
        save_file(state, str(tmp))
        os.replace(tmp, path.with_suffix(".safetensors"))
        os.chmod(path.with_suffix(".safetensors"), 0o644)  # safetensors writes 0600; a shipped file is world-readable
        meta = {
            "model": model.config,
            "fingerprint": "shapes-dual-" + state_dict_digest(model),
            "train": asdict(train_cfg),
            "data": config.get("data", {}),
            "command": "chatir train retriever --config " + str(config.get("_path")),
            "probe": result,
            "git": _git_head(),
        }
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        print(f"wrote {path.with_suffix('.safetensors')}")
    return 0


def _git_head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None

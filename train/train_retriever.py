"""Train a dialog-retrieval encoder from a config (``world: shapes`` here; ``world: visdial`` for BLIP)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Literal

from pydantic import Field
from safetensors.torch import save_file

from ..atomic import atomic_write, atomic_write_json
from ..config import Schema, UnknownNameError, validate
from .retriever import RetrieverTrainConfig, train_retriever
from .visdial_retriever import VisDialRetrieverConfig, train_visdial

WORLDS = ("shapes", "visdial")


class ShapesModelSection(Schema):
    """The Shapes dual encoder's size (``ShapesDualEncoder``'s arguments)."""

    dim: int = Field(256, ge=1, description="embedding dimension shared by the image and dialog towers")
    image_size: int = Field(36, ge=12, description="rendered scene size in pixels")
    cnn_width: int = Field(32, ge=1, description="channels of the image tower's CNN")
    text_width: int = Field(96, ge=1, description="width of the dialog tower's transformer")


class ShapesDataSection(Schema):
    """How training batches are drawn (``ShapesDialogSampler``'s arguments)."""

    batch_size: int = Field(256, ge=2, multiple_of=2,
                            description="dialogs per batch: half anchors, half their one-change twins")
    num_scenes: int = Field(200_000, ge=10, description="training scenes (drawn from the train split's generator)")
    answer_noise: float = Field(0.0, ge=0, le=1,
                                description="probability that the oracle's answer is replaced by a random one")
    caption_mask: float = Field(0.0, ge=0, le=1, description="probability that a dialog with turns loses its caption")
    max_rounds: int = Field(10, ge=0, description="dialogs are cut at a round drawn uniformly from 0..max_rounds")
    caption_negatives: float = Field(0.0, ge=0, le=1,
                                     description="share of twins that falsify one fact of the anchor's caption "
                                                 "instead of changing a random attribute")


class ShapesRetrieverConfig(Schema):
    """``chatir train retriever`` with ``world: shapes``: the Shapes dual encoder."""

    world: Literal["shapes"] = Field("shapes", description="the Shapes world")
    model: ShapesModelSection = Field(default_factory=ShapesModelSection, description="the encoder's size")
    data: ShapesDataSection = Field(default_factory=ShapesDataSection, description="training batches")
    train: RetrieverTrainConfig = Field(default_factory=RetrieverTrainConfig, description="the trainer")
    init: str | None = Field(None, description="start from these weights (a name in chatir_env/worlds/weights or a "
                                               ".safetensors path with its .json), e.g. to continue a finished stage "
                                               "with harder negatives; its model section must match")
    export: str | None = Field(None, description="write the trained encoder to EXPORT.safetensors and EXPORT.json "
                                                 "(with --out-dir: <out_dir>/shapes_dual instead)")


CONFIG_SCHEMAS = {"world: shapes": ShapesRetrieverConfig, "world: visdial": VisDialRetrieverConfig}  # for --fields


def main(config: dict, out_dir: str | None = None, steps: int | None = None) -> int:
    world = config.get("world")
    if world == "shapes":
        return train_shapes(config, out_dir, steps)
    if world == "visdial":
        return train_visdial(config, out_dir, steps)  # the BLIP text side (see configs/retriever_visdial_blip.yaml)
    raise UnknownNameError("retriever world", world, WORLDS, where=f"{config.get('_path', 'config')}: world")


def train_shapes(config: dict, out_dir: str | None, steps: int | None) -> int:
    from ..worlds.shapes_retrievers import ShapesDualEncoder, state_dict_digest
    from ..worlds.shapes_training import ShapesDialogSampler, ShapesRetrievalProbe

    cfg = validate(ShapesRetrieverConfig, config)
    train_cfg = cfg.train
    if out_dir:
        train_cfg.out_dir = out_dir
    if steps:
        train_cfg.steps = steps
    model = ShapesDualEncoder(**cfg.model.model_dump())
    init = None
    if cfg.init:
        from ..worlds.shapes import load_dual_encoder

        start = load_dual_encoder(cfg.init)
        if start.config != model.config:
            raise ValueError(f"{config.get('_path', 'config')}: init: {cfg.init} is a {start.config} encoder, "
                             f"but the model section asks for {model.config}")
        model.load_state_dict(start.state_dict())
        init = {"weights": cfg.init, "fingerprint": "shapes-dual-" + state_dict_digest(start)}
    sampler = ShapesDialogSampler(seed=train_cfg.seed, image_size=model.config["image_size"], **cfg.data.model_dump())
    probe = ShapesRetrievalProbe(image_size=model.config["image_size"])
    result = train_retriever(model, sampler, train_cfg, evaluate=probe)
    print(json.dumps(result))
    if cfg.export:
        path = Path(cfg.export if not out_dir else Path(train_cfg.out_dir) / "shapes_dual")
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        atomic_write(path.with_suffix(".safetensors"), lambda tmp: save_file(state, tmp))
        meta = {
            "model": model.config,
            "fingerprint": "shapes-dual-" + state_dict_digest(model),
            "train": train_cfg.model_dump(),
            "data": cfg.data.model_dump(),
            "init": init,
            "command": config.get("_command") or "chatir train retriever --config " + str(config.get("_path")),
            "probe": result,
            "git": _git_head(),
        }
        atomic_write_json(path.with_suffix(".json"), meta)
        print(f"wrote {path.with_suffix('.safetensors')}")
    return 0


def _git_head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None

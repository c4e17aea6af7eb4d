"""Convert an original salesforce-BLIP retrieval/ITM state dict to the keys of HF ``BlipForImageTextRetrieval``.

The original is ChatIR's released ``chatir_weights.ckpt``.

Key map (original -> HF)::

    visual_encoder.cls_token                 -> vision_model.embeddings.class_embedding
    visual_encoder.pos_embed                 -> vision_model.embeddings.position_embedding  (interpolated if the grid differs)
    visual_encoder.patch_embed.proj.*        -> vision_model.embeddings.patch_embedding.*
    visual_encoder.blocks.{i}.norm1.*        -> vision_model.encoder.layers.{i}.layer_norm1.*
    visual_encoder.blocks.{i}.norm2.*        -> vision_model.encoder.layers.{i}.layer_norm2.*
    visual_encoder.blocks.{i}.attn.qkv.*     -> vision_model.encoder.layers.{i}.self_attn.qkv.*
    visual_encoder.blocks.{i}.attn.proj.*    -> vision_model.encoder.layers.{i}.self_attn.projection.*
    visual_encoder.blocks.{i}.mlp.fc{1,2}.*  -> vision_model.encoder.layers.{i}.mlp.fc{1,2}.*
    visual_encoder.norm.*                    -> vision_model.post_layernorm.*
    text_encoder.*, vision_proj.*, text_proj.*, itm_head.*   unchanged

Dropped on purpose: ``text_encoder.embeddings.position_ids`` (a buffer HF rebuilds), the momentum
encoders and queues of ``blip_retrieval`` training checkpoints (``*_m.*``, ``*_queue``, ``temp``),
and ``text_encoder.pooler.*`` (unused: the retrieval text encoder has no pooling layer). Any other
key, a key HF expects that the checkpoint lacks, or a shape that does not fit raises
:class:`BlipCheckpointError` naming the keys.

The position table is resized as BLIP's own ``interpolate_pos_embed`` does it: the class row kept,
the patch grid resized bicubically (``align_corners=False``), e.g. 577 rows (384 px, patch 16) to
197 rows (224 px).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F

__all__ = [
    "BlipCheckpointError",
    "chatir_blip_config",
    "convert_blip_state_dict",
    "interpolate_pos_embed",
    "load_original_state_dict",
    "load_original_blip",
    "original_key_to_hf",
]


class BlipCheckpointError(KeyError):
    """A checkpoint whose keys or shapes do not fit HF ``BlipForImageTextRetrieval``."""

    def __str__(self) -> str:  # KeyError quotes its message; this one reads as a sentence
        return str(self.args[0])


_VISION_BLOCK = re.compile(r"^visual_encoder\.blocks\.(\d+)\.(.+)$")
_BLOCK_PARTS = {
    "norm1.": "layer_norm1.",
    "norm2.": "layer_norm2.",
    "attn.qkv.": "self_attn.qkv.",
    "attn.proj.": "self_attn.projection.",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
}
_VISION_TOP = {
    "visual_encoder.cls_token": "vision_model.embeddings.class_embedding",
    "visual_encoder.pos_embed": "vision_model.embeddings.position_embedding",
    "visual_encoder.patch_embed.proj.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual_encoder.patch_embed.proj.bias": "vision_model.embeddings.patch_embedding.bias",
    "visual_encoder.norm.weight": "vision_model.post_layernorm.weight",
    "visual_encoder.norm.bias": "vision_model.post_layernorm.bias",
}
_UNCHANGED_PREFIXES = ("text_encoder.", "vision_proj.", "text_proj.", "itm_head.")
# Keys that a BLIP checkpoint may hold and the retrieval model does not use.
_DROPPED = re.compile(
    r"^(text_encoder\.embeddings\.position_ids"
    r"|text_encoder\.pooler\..*"
    r"|(visual_encoder|text_encoder|vision_proj|text_proj)_m\..*"
    r"|(image|text|idx|ptr)_queue"
    r"|temp)$"
)


def original_key_to_hf(key: str) -> str | None:
    """The HF name of one original BLIP key; ``None`` for a key dropped on purpose.

    Raises :class:`BlipCheckpointError` for a key the map does not know.
    """
    if _DROPPED.match(key):
        return None
    if key in _VISION_TOP:
        return _VISION_TOP[key]
    match = _VISION_BLOCK.match(key)
    if match:
        index, rest = match.groups()
        for old, new in _BLOCK_PARTS.items():
            if rest.startswith(old):
                return f"vision_model.encoder.layers.{index}.{new}{rest[len(old):]}"
    elif key.startswith(_UNCHANGED_PREFIXES):
        return key
    raise BlipCheckpointError(f"unknown key in the BLIP checkpoint: {key!r} (no HF BlipForImageTextRetrieval name for it)")


def interpolate_pos_embed(pos_embed: torch.Tensor, num_positions: int, num_extra_tokens: int = 1) -> torch.Tensor:
    """Resize a ViT position table ``[1, extra + g*g, d]`` to ``[1, num_positions, d]``.

    The extra (class) rows are kept; the square patch grid is resized bicubically, exactly as BLIP's
    ``interpolate_pos_embed`` does when it loads a checkpoint at another image size.
    """
    if pos_embed.ndim == 2:
        pos_embed = pos_embed.unsqueeze(0)
    if pos_embed.shape[1] == num_positions:
        return pos_embed
    dim = pos_embed.shape[-1]
    old_grid = math.isqrt(pos_embed.shape[1] - num_extra_tokens)
    new_grid = math.isqrt(num_positions - num_extra_tokens)
    if old_grid * old_grid != pos_embed.shape[1] - num_extra_tokens or new_grid * new_grid != num_positions - num_extra_tokens:
        raise BlipCheckpointError(
            f"cannot interpolate a position table of {pos_embed.shape[1]} rows to {num_positions}: "
            "both must be 1 class row plus a square patch grid"
        )
    extra = pos_embed[:, :num_extra_tokens]
    grid = pos_embed[:, num_extra_tokens:].reshape(1, old_grid, old_grid, dim).permute(0, 3, 1, 2)
    dtype = grid.dtype
    grid = F.interpolate(grid.float(), size=(new_grid, new_grid), mode="bicubic", align_corners=False).to(dtype)
    grid = grid.permute(0, 2, 3, 1).flatten(1, 2)
    return torch.cat((extra, grid), dim=1)


def _unwrap(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    state = checkpoint
    for wrapper in ("model", "state_dict", "module"):
        inner = state.get(wrapper) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            state = inner
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = list(state)[:10] if isinstance(state, Mapping) else type(state).__name__
        raise BlipCheckpointError(f"not a BLIP state dict (expected name -> tensor, optionally under 'model'): {keys}")
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_original_state_dict(path: str | os.PathLike, weights_only: bool = True) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.ckpt`` (torch pickle) or ``.safetensors`` BLIP checkpoint, unwrapping ``{"model": ...}``.

    ``weights_only=True`` refuses pickled Python objects; pass ``False`` only for a file you trust.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return _unwrap(load_file(str(path)))
    checkpoint = torch.load(str(path), map_location="cpu", weights_only=weights_only)
    return _unwrap(checkpoint)


def convert_blip_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor | torch.Size | tuple] | None = None,
    num_positions: int | None = None,
) -> dict[str, torch.Tensor]:
    """Original BLIP keys -> HF ``BlipForImageTextRetrieval`` keys.

    ``expected``: the target model's state dict (or name -> shape); when given, missing keys and
    shape mismatches raise :class:`BlipCheckpointError` naming them, and the position table is
    interpolated to the target's row count. ``num_positions`` overrides that row count.
    """
    state = _unwrap(state_dict)
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        try:
            new_key = original_key_to_hf(key)
        except BlipCheckpointError:
            unknown.append(key)
            continue
        if new_key is not None:
            converted[new_key] = value
    if unknown:
        raise BlipCheckpointError(
            f"unknown key(s) in the BLIP checkpoint: {', '.join(sorted(unknown)[:20])}"
            + (f" (+{len(unknown) - 20} more)" if len(unknown) > 20 else "")
        )

    shapes = None
    if expected is not None:
        shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in expected.items()}
    pos_key = "vision_model.embeddings.position_embedding"
    if num_positions is None and shapes is not None and pos_key in shapes:
        num_positions = shapes[pos_key][1]
    if pos_key in converted and num_positions is not None:
        converted[pos_key] = interpolate_pos_embed(converted[pos_key], num_positions)

    if shapes is not None:
        missing = sorted(set(shapes) - set(converted))
        if missing:
            raise BlipCheckpointError(
                f"missing key(s) in the BLIP checkpoint (HF names): {', '.join(missing[:20])}"
                + (f" (+{len(missing) - 20} more)" if len(missing) > 20 else "")
            )
        extra = sorted(set(converted) - set(shapes))
        if extra:
            raise BlipCheckpointError(f"checkpoint key(s) that the target model does not have: {', '.join(extra[:20])}")
        wrong = [f"{k}: checkpoint {tuple(converted[k].shape)} vs model {shapes[k]}"
                 for k in sorted(converted) if tuple(converted[k].shape) != shapes[k]]
        if wrong:
            raise BlipCheckpointError("shape mismatch between the BLIP checkpoint and the config: " + "; ".join(wrong[:10]))
    return converted


def chatir_blip_config(**overrides):
    """The ``BlipConfig`` of ChatIR's retriever: BLIP ViT-B/16 at 224 px + BERT-base text encoder.

    Vision: 12 layers, 12 heads, hidden 768, LayerNorm eps 1e-6 (timm ViT), 224 px. Text (BLIP's
    ``med_config.json``): vocab 30524 (bert-base-uncased + [DEC] + [ENC]), 12 layers, 12 heads,
    cross-attention width 768. Projection 256.
    """
    from transformers import BlipConfig

    text = dict(
        vocab_size=30524,
        hidden_size=768,
        encoder_hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=512,
        layer_norm_eps=1e-12,
        hidden_act="gelu",
        bos_token_id=30522,
        pad_token_id=0,
        sep_token_id=102,
    )
    vision = dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=224,
        patch_size=16,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        initializer_range=0.02,
    )
    text.update(overrides.pop("text_config", {}) or {})
    vision.update(overrides.pop("vision_config", {}) or {})
    kwargs = dict(image_text_hidden_size=256, projection_dim=256)
    kwargs.update(overrides)
    return BlipConfig(text_config=text, vision_config=vision, **kwargs)


def load_original_blip(path_or_state_dict, config=None, weights_only: bool = True):
    """Build HF ``BlipForImageTextRetrieval`` from ``config`` and load an original BLIP checkpoint into it.

    ``config`` defaults to :func:`chatir_blip_config`; the checkpoint (path or state dict) is loaded strictly.
    """
    from transformers import BlipForImageTextRetrieval

    if isinstance(path_or_state_dict, Mapping):
        state = _unwrap(path_or_state_dict)
    else:
        state = load_original_state_dict(path_or_state_dict, weights_only=weights_only)
    config = config if config is not None else chatir_blip_config()
    model = BlipForImageTextRetrieval(config)
    converted = convert_blip_state_dict(state, expected=model.state_dict())
    model.load_state_dict(converted, strict=True)
    return model.eval()

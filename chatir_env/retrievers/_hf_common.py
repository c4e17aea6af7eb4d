"""Helpers shared by the transformers-backed retrievers and answerers.

Device and dtype resolution, image loading (PIL only: torchvision is not installable beside the
pinned torch), image-processor loading that prefers the ``*ImageProcessorPil`` classes, and weight
fingerprints.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch

# Config keys that change on a save/load round trip or name no property of the weights.
_VOLATILE_CONFIG_KEYS = {
    "transformers_version",
    "dtype",
    "torch_dtype",
    "architectures",
    "name_or_path",
    "output_hidden_states",
    "output_attentions",
    "return_dict",
    "use_cache",
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when available, else CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` means float32. Half precision is for accelerators: on CPU it falls back to float32."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        name = dtype.replace("torch.", "")
        aliases = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32", "float": "float32"}
        name = aliases.get(name, name)
        if not hasattr(torch, name) or not isinstance(getattr(torch, name), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}")
        dtype = getattr(torch, name)
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"unsupported model dtype {dtype}; use float32, float16 or bfloat16")
    if device.type == "cpu" and dtype != torch.float32:
        warnings.warn(f"{dtype} requested on CPU; using float32", stacklevel=3)
        return torch.float32
    return dtype


def load_image(item: Any):
    """A PIL image (returned as RGB) or a path to an image file."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return item.convert("RGB") if item.mode != "RGB" else item
    if isinstance(item, (str, os.PathLike)):
        with Image.open(item) as image:
            return image.convert("RGB")
    raise TypeError(f"expected a PIL image or an image path, got {type(item).__name__}")


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def load_image_processor(path: str | os.PathLike | None, pil_class: type, fallback_class: type | None = None, **overrides):
    """The PIL image processor saved in ``path`` (or the class defaults), with ``overrides`` applied.

    Falls back to ``fallback_class`` (the plain processor) if the PIL class cannot read the saved
    configuration.
    """
    if path is not None and (Path(path) / "preprocessor_config.json").is_file():
        try:
            return pil_class.from_pretrained(str(path), **overrides)
        except Exception:  # pragma: no cover - only for configs the PIL class rejects
            if fallback_class is None:
                raise
            return fallback_class.from_pretrained(str(path), **overrides)
    return pil_class(**overrides)


def _clean_config(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            str(k): _clean_config(v)
            for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
            if not str(k).startswith("_") and str(k) not in _VOLATILE_CONFIG_KEYS
        }
    if isinstance(value, (list, tuple)):
        return [_clean_config(v) for v in value]
    return value


def weights_fingerprint(
    kind: str,
    model: torch.nn.Module,
    config: Any = None,
    extra: dict | None = None,
    samples_per_tensor: int = 4096,
) -> str:
    """A stable name for a model's weights: ``"<kind>-<16 hex>"``.

    The digest covers every parameter's name, shape and an evenly strided sample of at most
    ``samples_per_tensor`` of its values (as float32 bytes), the model config (without keys that
    change on save/load) and ``extra`` (preprocessing settings). Two different random models differ;
    a ``save_pretrained`` / ``from_pretrained`` round trip gives the same string. Cheap: a BLIP base
    hashes ~1M numbers.
    """
    digest = hashlib.sha256()
    digest.update(kind.encode())
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // samples_per_tensor)
        sample = flat[::step][:samples_per_tensor].to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(repr(tuple(tensor.shape)).encode())
        digest.update(sample.numpy().tobytes())
    if config is not None:
        as_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        digest.update(json.dumps(_clean_config(as_dict), sort_keys=True, default=str).encode())
    if extra:
        digest.update(json.dumps(_clean_config(extra), sort_keys=True, default=str).encode())
    return f"{kind}-{digest.hexdigest()[:16]}"


def processor_settings(processor: Any, keys: Iterable[str]) -> dict:
    """The preprocessing settings that change an image's features, for the fingerprint."""
    out = {}
    for key in keys:
        value = getattr(processor, key, None)
        if isinstance(value, enum.Enum):
            value = value.value
        elif dataclasses.is_dataclass(value):
            value = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
        elif isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out

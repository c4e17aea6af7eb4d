"""Helpers shared by the transformers-backed retrievers and answerers.

Device and dtype resolution, image loading (PIL only: torchvision is not installable beside the
pinned torch), image-processor loading that prefers the ``*ImageProcessorPil`` classes, weight
fingerprints, and :class:`HFDualEncoder`, the retriever skeleton BLIP and CLIP share.
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
import torch.nn.functional as F

from ..dialog import Dialog

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


def load_tokenizer(tokenizer: Any, default: str | os.PathLike | None = None):
    """``tokenizer`` itself when it is one; a name or directory (``None``: ``default``) loaded with AutoTokenizer."""
    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer or default))


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


class HFDualEncoder:
    """The skeleton of a :class:`~chatir_env.protocols.Retriever` over a transformers dual encoder.

    It owns device/dtype placement, batching, preprocessing, normalisation, saving and the
    fingerprint. A subclass supplies only what differs between models:

    - ``_image_features(pixel_values)`` and ``_text_features(input_ids, attention_mask)``: the
      projected (not yet normalised) feature of each row;
    - ``_default_image_processor()`` and ``_feature_dim()``: read from ``self.model.config``;
    - ``PROCESSOR_KEYS``: the image-processor settings that change features, fingerprinted so that
      an index built with other preprocessing is not mistaken for this one (``_fingerprint_extra``
      adds anything else that does);
    - ``preprocess_images(items)`` and ``tokenize(texts)`` where its model is fed otherwise than
      through ``image_processor`` (after an RGB conversion) and ``tokenizer``;
    - its own ``__init__`` defaults and ``from_pretrained``.
    """

    PROCESSOR_KEYS: tuple[str, ...] = ()

    def __init__(
        self,
        model,
        tokenizer,
        image_processor,
        device: str | torch.device | None,
        dtype: str | torch.dtype | None,
        batch_size: int,
        max_length: int,
    ) -> None:
        # No defaults here: each subclass's signature states its own (BLIP keeps 200 tokens, CLIP 77).
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        self.image_processor = self._default_image_processor() if image_processor is None else image_processor
        self.batch_size = int(batch_size)
        # Never ask the tokenizer for more tokens than the text encoder has positions for.
        limit = int(self.model.config.text_config.max_position_embeddings)
        self.max_length = min(int(max_length), limit)
        self.dim = self._feature_dim()
        # The class name keeps BLIP and CLIP fingerprints apart; max_length and the preprocessing are
        # in it because they change the features as much as the weights do.
        self.fingerprint = weights_fingerprint(
            type(self).__name__, self.model, self.model.config, extra=self._fingerprint_extra()
        )

    # ------------------------------------------------------------------ subclass hooks
    def _default_image_processor(self):
        raise NotImplementedError

    def _feature_dim(self) -> int:
        raise NotImplementedError

    def _image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _fingerprint_extra(self) -> dict:
        """The settings besides the weights that change features: ``max_length`` and the image processor's."""
        return {"max_length": self.max_length, **processor_settings(self.image_processor, self.PROCESSOR_KEYS)}

    def _dialog_text(self, dialog: Dialog | str) -> str:
        """ChatIR's query string for one dialog; anything else is passed through ``str``."""
        return dialog.text() if isinstance(dialog, Dialog) else str(dialog)

    # ------------------------------------------------------------------ shared
    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Model, tokenizer and image processor, readable by ``from_pretrained``."""
        Path(path).mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        self.image_processor.save_pretrained(str(path))

    def preprocess_images(self, items: Sequence[Any]) -> torch.Tensor:
        """PIL images or image paths -> the model's ``pixel_values`` (converted to RGB, then the image processor)."""
        return self.image_processor([load_image(i) for i in items], return_tensors="pt")["pixel_values"]

    def tokenize(self, texts: Sequence[str]):
        """Query strings -> the tokenizer's ``BatchEncoding`` (padded to the longest, cut at ``max_length``)."""
        return self.tokenizer(list(texts), padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt")

    @torch.inference_mode()
    def encode_images(self, items: Sequence[Any]) -> torch.Tensor:
        """PIL images or image paths -> unit vectors ``[n, dim]`` (float32, on ``self.device``)."""
        out = []
        for chunk in batches(list(items), self.batch_size):
            pixels = self.preprocess_images(chunk)
            feats = self._image_features(pixels.to(self.device, self.dtype))
            out.append(F.normalize(feats.float(), dim=-1))
        # An empty gallery still has the feature width, so callers can concatenate it.
        return torch.cat(out) if out else torch.zeros(0, self.dim, device=self.device)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Query strings -> unit vectors ``[n, dim]``; longer than ``max_length`` tokens are truncated."""
        out = []
        for chunk in batches(list(texts), self.batch_size):
            tokens = self.tokenize(chunk)
            feats = self._text_features(tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device))
            out.append(F.normalize(feats.float(), dim=-1))
        return torch.cat(out) if out else torch.zeros(0, self.dim, device=self.device)

    def encode_dialogs(self, dialogs: Sequence[Dialog | str]) -> torch.Tensor:
        """Dialogs (ChatIR's query string, ``Dialog.text()``) -> unit vectors ``[n, dim]``."""
        return self.encode_texts([self._dialog_text(d) for d in dialogs])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fingerprint={self.fingerprint!r}, device={self.device}, dtype={self.dtype})"

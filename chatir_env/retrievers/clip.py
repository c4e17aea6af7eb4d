"""ChatIR's zero-shot CLIP baseline (HF ``CLIPModel``).

As ChatIR's ``CLIP_ZERO_SHOT_BASELINE``: the dialog string is tokenised with truncation to CLIP's
77-token context (``clip.tokenize(text, truncate=True)``: the end-of-text token is kept as the last
token), images are resized on the short side and centre-cropped with CLIP's mean/std. Both sides go
through the projection and are L2-normalised. In transformers 5 ``get_text_features`` /
``get_image_features`` return an output object whose ``pooler_output`` holds the projected vector;
older versions return the tensor itself: both are handled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..dialog import Dialog
from ._hf_common import (
    batches,
    load_image,
    load_image_processor,
    processor_settings,
    resolve_device,
    resolve_dtype,
    weights_fingerprint,
)

__all__ = ["ClipRetriever", "CLIP_CONTEXT_LENGTH"]

CLIP_CONTEXT_LENGTH = 77


def _features(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        pooled = output[1] if isinstance(output, (tuple, list)) else None
    if pooled is None:
        raise TypeError(f"cannot read features from {type(output).__name__}")
    return pooled


class ClipRetriever:
    """A :class:`~chatir_env.protocols.Retriever` over HF ``CLIPModel`` (zero-shot)."""

    def __init__(
        self,
        model,
        tokenizer,
        image_processor=None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 64,
        max_length: int = CLIP_CONTEXT_LENGTH,
    ) -> None:
        from transformers import CLIPImageProcessorPil

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        if image_processor is None:
            size = self.model.config.vision_config.image_size
            image_processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        self.image_processor = image_processor
        self.batch_size = int(batch_size)
        limit = int(self.model.config.text_config.max_position_embeddings)
        self.max_length = min(int(max_length), limit)
        self.dim = int(self.model.config.projection_dim)
        self.fingerprint = weights_fingerprint(
            type(self).__name__,
            self.model,
            self.model.config,
            extra={
                "max_length": self.max_length,
                **processor_settings(
                    self.image_processor, ("size", "crop_size", "do_center_crop", "image_mean", "image_std", "resample")
                ),
            },
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        tokenizer=None,
        **kwargs: Any,
    ) -> "ClipRetriever":
        """Load an HF directory (or hub id, e.g. ``openai/clip-vit-base-patch16`` as ChatIR's ViT-B/16)."""
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPImageProcessorPil, CLIPModel

        model = CLIPModel.from_pretrained(str(path))
        if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer or path))
        processor = kwargs.pop("image_processor", None)
        if processor is None and Path(path).is_dir() and (Path(path) / "preprocessor_config.json").is_file():
            processor = load_image_processor(path, CLIPImageProcessorPil, CLIPImageProcessor)
        return cls(model, tokenizer, processor, device=device, dtype=dtype, **kwargs)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        self.image_processor.save_pretrained(str(path))

    @torch.inference_mode()
    def encode_images(self, items: Sequence[Any]) -> torch.Tensor:
        """PIL images or image paths -> unit vectors ``[n, dim]`` (float32, on ``self.device``)."""
        out = []
        for chunk in batches(list(items), self.batch_size):
            pixels = self.image_processor([load_image(i) for i in chunk], return_tensors="pt")["pixel_values"]
            feats = _features(self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)))
            out.append(F.normalize(feats.float(), dim=-1))
        return torch.cat(out) if out else torch.zeros(0, self.dim, device=self.device)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Strings -> unit vectors; anything past 77 tokens is cut (the end token kept), as ChatIR."""
        out = []
        for chunk in batches(list(texts), self.batch_size):
            tokens = self.tokenizer(
                list(chunk), padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            feats = _features(
                self.model.get_text_features(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                )
            )
            out.append(F.normalize(feats.float(), dim=-1))
        return torch.cat(out) if out else torch.zeros(0, self.dim, device=self.device)

    def encode_dialogs(self, dialogs: Sequence[Dialog | str]) -> torch.Tensor:
        return self.encode_texts([d.text() if isinstance(d, Dialog) else str(d) for d in dialogs])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fingerprint={self.fingerprint!r}, device={self.device}, dtype={self.dtype})"

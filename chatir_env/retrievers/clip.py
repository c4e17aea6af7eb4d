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
from typing import Any

import torch

from ._hf_common import HFDualEncoder, load_image_processor, load_tokenizer

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


class ClipRetriever(HFDualEncoder):
    """A :class:`~chatir_env.protocols.Retriever` over HF ``CLIPModel`` (zero-shot).

    Text past 77 tokens is cut (the end token kept), as ChatIR.
    """

    PROCESSOR_KEYS = ("size", "crop_size", "do_center_crop", "image_mean", "image_std", "resample")

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
        super().__init__(model, tokenizer, image_processor, device, dtype, batch_size, max_length)

    def _default_image_processor(self):
        from transformers import CLIPImageProcessorPil

        size = self.model.config.vision_config.image_size
        return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})

    def _feature_dim(self) -> int:
        return int(self.model.config.projection_dim)

    def _image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=pixel_values))

    def _text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

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
        from transformers import CLIPImageProcessor, CLIPImageProcessorPil, CLIPModel

        model = CLIPModel.from_pretrained(str(path))
        tokenizer = load_tokenizer(tokenizer, default=path)
        processor = kwargs.pop("image_processor", None)
        if processor is None and Path(path).is_dir() and (Path(path) / "preprocessor_config.json").is_file():
            processor = load_image_processor(path, CLIPImageProcessorPil, CLIPImageProcessor)
        return cls(model, tokenizer, processor, device=device, dtype=dtype, **kwargs)

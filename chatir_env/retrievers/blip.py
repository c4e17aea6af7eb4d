"""ChatIR's dialog retriever: BLIP's ITC text and image encoders (HF ``BlipForImageTextRetrieval``).

Exactly the two functions of ChatIR's ``baselines.BLIP_BASELINE``:

- dialog -> ``normalize(text_proj(text_encoder(ids, mode="text").last_hidden_state[:, 0]))``: the text
  encoder runs alone (no image, bidirectional attention), the dialog string truncated to 200 tokens;
- image -> ``normalize(vision_proj(visual_encoder(img)[:, 0]))``: the class token of the ViT's
  last hidden state (after the final LayerNorm), not HF's ``pooler_output`` (which applies the
  LayerNorm a second time); 224 px bicubic resize, CLIP mean/std.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..dialog import Dialog
from ._hf_common import HFDualEncoder, load_image_processor, load_tokenizer

__all__ = ["BlipDialogRetriever"]

DEFAULT_TOKENIZER = "Salesforce/blip-itm-base-coco"  # bert-base-uncased + [DEC] + [ENC], as BLIP's own


def _dialog_text(item: Dialog | str) -> str:
    if isinstance(item, Dialog):
        return item.text()
    if isinstance(item, str):
        return item
    raise TypeError(f"expected a Dialog or a str, got {type(item).__name__}")


class BlipDialogRetriever(HFDualEncoder):
    """A :class:`~chatir_env.protocols.Retriever` over HF ``BlipForImageTextRetrieval``.

    Args:
        model: a ``BlipForImageTextRetrieval``.
        tokenizer: its BERT tokenizer.
        image_processor: defaults to ``BlipImageProcessorPil`` at the model's ``image_size``.
        device: ``None`` picks CUDA when available.
        dtype: ``None`` means float32; ``torch.float16`` is honoured on CUDA only. Features are
            always returned as float32.
        batch_size: images or dialogs per forward pass.
        max_length: dialog tokens kept (ChatIR: 200, ``truncation=True``).
    """

    PROCESSOR_KEYS = ("size", "image_mean", "image_std", "resample", "do_normalize")

    def __init__(
        self,
        model,
        tokenizer,
        image_processor=None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 64,
        max_length: int = 200,
    ) -> None:
        super().__init__(model, tokenizer, image_processor, device, dtype, batch_size, max_length)

    # Unlike CLIP, BLIP has always refused queries that are neither a Dialog nor a str.
    _dialog_text = staticmethod(_dialog_text)

    def _default_image_processor(self):
        from transformers import BlipImageProcessorPil

        size = self.model.config.vision_config.image_size
        return BlipImageProcessorPil(size={"height": size, "width": size})

    def _feature_dim(self) -> int:
        return int(self.model.config.image_text_hidden_size)

    def _image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # The ViT's class token after its final LayerNorm, not ``pooler_output`` (LayerNorm twice).
        hidden = self.model.vision_model(pixel_values=pixel_values).last_hidden_state
        return self.model.vision_proj(hidden[:, 0, :])

    def _text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # The text encoder alone (no image, bidirectional attention), as BLIP's ``mode="text"``.
        hidden = self.model.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, is_decoder=False
        ).last_hidden_state
        return self.model.text_proj(hidden[:, 0, :])

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        tokenizer=None,
        **kwargs: Any,
    ) -> "BlipDialogRetriever":
        """Load an HF directory (or hub id) holding a ``BlipForImageTextRetrieval`` and its tokenizer.

        The image processor is read from the directory when it holds one (a PIL processor), and
        resized to the model's ``image_size`` either way.
        """
        from transformers import BlipForImageTextRetrieval, BlipImageProcessor, BlipImageProcessorPil

        model = BlipForImageTextRetrieval.from_pretrained(str(path))
        tokenizer = load_tokenizer(tokenizer, default=path)
        size = model.config.vision_config.image_size
        processor = kwargs.pop("image_processor", None) or load_image_processor(
            path if Path(path).is_dir() else None,
            BlipImageProcessorPil,
            BlipImageProcessor,
            size={"height": size, "width": size},
        )
        return cls(model, tokenizer, processor, device=device, dtype=dtype, **kwargs)

    @classmethod
    def from_original_checkpoint(
        cls,
        path: str | os.PathLike,
        config=None,
        tokenizer=DEFAULT_TOKENIZER,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        weights_only: bool = True,
        **kwargs: Any,
    ) -> "BlipDialogRetriever":
        """Load an original salesforce-BLIP checkpoint (ChatIR's ``chatir_weights.ckpt``; ``.pth``,
        ``.ckpt`` or ``.safetensors``) through :mod:`chatir_env.retrievers.blip_convert`.

        ``config`` defaults to :func:`~chatir_env.retrievers.blip_convert.chatir_blip_config`
        (ViT-B/16 at 224 px). ``tokenizer``: a tokenizer object, a local directory, or a hub id (the
        default needs the hub or its cache). Save the result with :meth:`save_pretrained` to load it
        later with :meth:`from_pretrained`.
        """
        from transformers import AutoTokenizer

        from .blip_convert import load_original_blip

        model = load_original_blip(path, config=config, weights_only=weights_only)
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        return cls(model, tokenizer, device=device, dtype=dtype, **kwargs)

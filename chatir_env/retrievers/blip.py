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

__all__ = ["BlipDialogRetriever"]

DEFAULT_TOKENIZER = "Salesforce/blip-itm-base-coco"  # bert-base-uncased + [DEC] + [ENC], as BLIP's own


def _dialog_text(item: Dialog | str) -> str:
    if isinstance(item, Dialog):
        return item.text()
    if isinstance(item, str):
        return item
    raise TypeError(f"expected a Dialog or a str, got {type(item).__name__}")


class BlipDialogRetriever:
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
        from transformers import BlipImageProcessorPil

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        size = self.model.config.vision_config.image_size
        if image_processor is None:
            image_processor = BlipImageProcessorPil(size={"height": size, "width": size})
        self.image_processor = image_processor
        self.batch_size = int(batch_size)
        limit = self.model.config.text_config.max_position_embeddings
        self.max_length = min(int(max_length), int(limit))
        self.dim = int(self.model.config.image_text_hidden_size)
        self.fingerprint = weights_fingerprint(
            type(self).__name__,
            self.model,
            self.model.config,
            extra={
                "max_length": self.max_length,
                **processor_settings(self.image_processor, ("size", "image_mean", "image_std", "resample", "do_normalize")),
            },
        )

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
        from transformers import AutoTokenizer, BlipForImageTextRetrieval, BlipImageProcessor, BlipImageProcessorPil

        model = BlipForImageTextRetrieval.from_pretrained(str(path))
        if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer or path))
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

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Model, tokenizer and image processor, readable by :meth:`from_pretrained`."""
        Path(path).mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        self.image_processor.save_pretrained(str(path))

    # ------------------------------------------------------------------ encoders
    @torch.inference_mode()
    def encode_images(self, items: Sequence[Any]) -> torch.Tensor:
        """PIL images or image paths -> unit vectors ``[n, dim]`` (float32, on ``self.device``)."""
        items = list(items)
        out = []
        for chunk in batches(items, self.batch_size):
            images = [load_image(item) for item in chunk]
            pixels = self.image_processor(images, return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self.device, self.dtype)
            hidden = self.model.vision_model(pixel_values=pixels).last_hidden_state
            out.append(F.normalize(self.model.vision_proj(hidden[:, 0, :]).float(), dim=-1))
        if not out:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.cat(out)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Query strings -> unit vectors ``[n, dim]``; longer than ``max_length`` tokens are truncated."""
        texts = list(texts)
        out = []
        for chunk in batches(texts, self.batch_size):
            tokens = self.tokenizer(
                list(chunk), padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            hidden = self.model.text_encoder(
                input_ids=tokens["input_ids"].to(self.device),
                attention_mask=tokens["attention_mask"].to(self.device),
                is_decoder=False,
            ).last_hidden_state
            out.append(F.normalize(self.model.text_proj(hidden[:, 0, :]).float(), dim=-1))
        if not out:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.cat(out)

    def encode_dialogs(self, dialogs: Sequence[Dialog | str]) -> torch.Tensor:
        """Dialogs (ChatIR's query string, ``Dialog.text()``) -> unit vectors ``[n, dim]``."""
        return self.encode_texts([_dialog_text(d) for d in dialogs])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fingerprint={self.fingerprint!r}, device={self.device}, dtype={self.dtype})"

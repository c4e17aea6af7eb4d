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

__all__ = ["BlipDialogRetriever", "BlipTokenizerNotFoundError", "resolve_blip_tokenizer"]

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
        """Load an original salesforce-BLIP checkpoint through :mod:`chatir_env.retrievers.blip_convert`.

        That is ChatIR's ``chatir_weights.ckpt``, as ``.pth``, ``.ckpt`` or ``.safetensors``.

        ``config`` defaults to :func:`~chatir_env.retrievers.blip_convert.chatir_blip_config`
        (ViT-B/16 at 224 px). ``tokenizer``: a tokenizer object, a local directory (an HF tokenizer
        folder, or one holding only bert-base-uncased's ``vocab.txt``), or a hub id (the default
        needs the hub or its cache). The tokenizer is resolved before the checkpoint is read, so a
        missing one fails at once. Save the result with :meth:`save_pretrained` to load it later
        with :meth:`from_pretrained`.

        Raises:
            BlipTokenizerNotFoundError: the tokenizer cannot be found; the message says what to
                download and where to pass it.
        """
        from .blip_convert import load_original_blip

        tokenizer = resolve_blip_tokenizer(tokenizer)  # before the (slow) conversion: fail fast offline
        model = load_original_blip(path, config=config, weights_only=weights_only)
        return cls(model, tokenizer, device=device, dtype=dtype, **kwargs)


class BlipTokenizerNotFoundError(FileNotFoundError):
    """The BERT tokenizer an original BLIP checkpoint needs is neither local nor reachable."""


# BLIP's own tokenizer is bert-base-uncased plus these two tokens (ids 30522 and 30523 in BLIP).
BLIP_EXTRA_TOKENS = {"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]}


def _tokenizer_missing(name: str, why: str) -> BlipTokenizerNotFoundError:
    return BlipTokenizerNotFoundError(
        f"BLIP's tokenizer {name!r} {why}. It is bert-base-uncased with BLIP's [DEC] and [ENC] tokens: download it "
        f"once where the hub is reachable (`huggingface-cli download {DEFAULT_TOKENIZER} --local-dir models/blip-tokenizer`, "
        "or any folder holding bert-base-uncased's vocab.txt) and pass tokenizer=<that folder> (a VisDial world's "
        "`tokenizer` argument; `model.tokenizer` in a retriever-training config)"
    )


def resolve_blip_tokenizer(tokenizer: Any = DEFAULT_TOKENIZER):
    """The tokenizer for an original BLIP checkpoint, from an object, a folder or a hub id.

    A folder with an HF tokenizer is loaded as it is; a folder holding only ``vocab.txt`` becomes a
    lower-casing ``BertTokenizer`` with BLIP's ``[DEC]`` and ``[ENC]`` tokens added. A name that is
    not a local path is looked up on the hub (or in its cache).

    Raises:
        BlipTokenizerNotFoundError: a folder that does not exist or holds no tokenizer, or a hub id
            that cannot be loaded (offline without the cache).
    """
    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    name = str(tokenizer or DEFAULT_TOKENIZER)
    path = Path(name)
    if path.is_dir():
        if any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
            return load_tokenizer(name)
        if (path / "vocab.txt").is_file():
            from transformers import BertTokenizer

            bert = BertTokenizer.from_pretrained(name, do_lower_case=True)  # reads vocab.txt alone
            bert.add_special_tokens(BLIP_EXTRA_TOKENS)
            return bert
        raise _tokenizer_missing(
            name, "is a folder without tokenizer files (tokenizer.json, tokenizer_config.json or vocab.txt)")
    if path.exists() or path.is_absolute() or name.startswith(".") or name.count("/") != 1:
        raise _tokenizer_missing(name, "is not a folder")
    try:
        return load_tokenizer(name)
    except Exception as err:  # the hub's errors differ by version (OSError, HfHubHTTPError, ValueError)
        raise _tokenizer_missing(
            name, f"could not be loaded ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None

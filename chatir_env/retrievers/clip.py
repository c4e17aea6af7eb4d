r"""ChatIR's zero-shot CLIP baseline: an HF ``CLIPModel`` fed as OpenAI's ``clip`` package feeds it.

ChatIR's ``CLIP_ZERO_SHOT_BASELINE`` (``baselines.py``) encodes a dialog string with
``clip.tokenize(text, truncate=True)`` and an image with the ``preprocess`` that ``clip.load``
returns (``clip._transform``), loading the model on the CPU (where ``clip.load`` casts it to float32)
and then moving it to the GPU. This module reproduces each step on an HF ``CLIPModel``:

* Text (:func:`clean_text`, :meth:`ClipRetriever.tokenize`): the string is cleaned as OpenAI's
  ``SimpleTokenizer.encode`` cleans it before splitting it into words: ``ftfy.fix_text``, then
  ``html.unescape`` twice, strip, every whitespace run made one space (the ``regex`` module's
  ``\s``, as OpenAI's), strip, lowercase. The HF CLIP tokenizer then applies the same word pattern
  and byte-level BPE (its own normaliser, NFC + whitespace + lowercase, changes nothing in a cleaned
  string). Without the cleaning a curly apostrophe ("it’s") or an HTML entity ("&amp;") gets other
  token ids than ``clip.tokenize`` gives. Truncation keeps the first 77 tokens with the end-of-text
  token last, as ``truncate=True`` does (start token, 75 tokens, end token). Padding differs
  (OpenAI pads with id 0, HF with its pad token under an attention mask); CLIP's causal text encoder
  reads the end token's state, which no later position changes.
* Images (:class:`ClipImageTransform`): OpenAI's ``_transform(n_px)``: resize the short side to
  ``n_px`` with PIL's bicubic filter (the long side ``int(n_px * long / short)``, as torchvision's
  ``Resize``; PIL itself falls back to nearest for palette and 1-bit images, as it does under
  torchvision), centre-crop with torchvision's offset ``int(round((size - n_px) / 2))`` (Python's
  round, half to even), convert to RGB only then, divide by 255 and normalise with CLIP's mean and
  std in float32 (``ToTensor`` + ``Normalize``). HF's ``CLIPImageProcessor(Pil)`` differs, so only
  its settings (size, crop size, mean, std, filter) are read, never its pixels: it converts to RGB
  before resizing (other pixels for palette and CMYK images), composites transparent images on
  white where PIL's ``convert("RGB")`` drops alpha, and floors the crop offset
  (``(size - n_px) // 2``, one pixel off whenever ``(size - n_px) % 4 == 3``, e.g. 640x427 images).
  torchvision 0.8 and older rounded the offset half up; current torchvision, used here, rounds half
  to even.
* Precision: ChatIR's CLIP runs in float32. ``dtype="float16"`` is possible but gives other features
  and another fingerprint, so an index must be built with the same ``dtype`` as the world that reads it.

Both sides go through the projection and are L2-normalised. In transformers 5 ``get_text_features``
/ ``get_image_features`` return an output object whose ``pooler_output`` holds the projected vector;
older versions return the tensor itself: both are handled.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import ftfy
import regex  # a transformers dependency; OpenAI's tokenizer cleans whitespace with this module's \s
import torch

from ._hf_common import HFDualEncoder, load_image_processor, load_tokenizer

__all__ = ["ClipRetriever", "ClipImageTransform", "CLIP_CONTEXT_LENGTH", "clean_text"]

CLIP_CONTEXT_LENGTH = 77

_WHITESPACE = regex.compile(r"\s+")


def clean_text(text: str) -> str:
    """The string OpenAI's ``SimpleTokenizer.encode`` splits into words.

    ``ftfy.fix_text`` (curly quotes straightened, mojibake repaired, NFC), HTML entities unescaped
    twice ("&amp;amp;" -> "&"), whitespace runs made single spaces, stripped, lowercased.

    Args:
        text: a dialog string.

    Returns:
        The cleaned string.
    """
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


def _setting(value: Any, key: str) -> Any:
    """``value[key]`` for a dict, ``value.key`` for HF's ``SizeDict``."""
    return value.get(key) if isinstance(value, dict) else getattr(value, key, None)


@dataclass(frozen=True)
class ResizeCrop:
    """Where OpenAI's ``Resize`` + ``CenterCrop`` put an image: its size after the resize and the crop box."""

    resized_width: int
    resized_height: int
    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True)
class ClipImageTransform:
    """OpenAI CLIP's ``_transform``: short-side resize, centre crop, RGB, ToTensor, Normalize.

    Args:
        size: the short side after resizing (``n_px``; 224 for ViT-B/16).
        crop_height, crop_width: the centre crop (``n_px`` x ``n_px`` in OpenAI's pipeline).
        mean, std: per-channel normalisation of the [0, 1] pixels.
        resample: the PIL filter of the resize (bicubic, 3).
    """

    size: int
    crop_height: int
    crop_width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int = 3

    @classmethod
    def from_processor(cls, processor: Any) -> "ClipImageTransform":
        """The settings of an HF CLIP image processor (its pixels are not used: see the module docstring).

        Raises:
            ValueError: the processor asks for a step OpenAI's pipeline does not have (no resize,
                no centre crop, a size other than a short side, another rescale factor, no normalisation).
        """
        name = type(processor).__name__
        for flag in ("do_resize", "do_center_crop", "do_rescale", "do_normalize"):
            if getattr(processor, flag, True) is False:
                raise ValueError(
                    f"{name} sets {flag}=False; ClipRetriever follows OpenAI CLIP's _transform, which always does that step"
                )
        size = _setting(processor.size, "shortest_edge")
        if size is None:
            raise ValueError(
                f"{name}.size is {processor.size!r}; OpenAI CLIP's _transform resizes the short side (shortest_edge)"
            )
        crop_height, crop_width = _setting(processor.crop_size, "height"), _setting(processor.crop_size, "width")
        if crop_height is None or crop_width is None:
            raise ValueError(f"{name}.crop_size is {processor.crop_size!r}; expected a height and a width")
        factor = float(getattr(processor, "rescale_factor", 1 / 255))
        if abs(factor - 1 / 255) > 1e-12:
            raise ValueError(f"{name}.rescale_factor is {factor}; OpenAI CLIP's ToTensor divides by 255")
        resample = getattr(processor, "resample", 3)
        return cls(
            size=int(size),
            crop_height=int(crop_height),
            crop_width=int(crop_width),
            mean=tuple(float(m) for m in processor.image_mean),
            std=tuple(float(s) for s in processor.image_std),
            resample=int(getattr(resample, "value", resample)),
        )

    def geometry(self, width: int, height: int) -> ResizeCrop:
        """Where an image of ``width`` x ``height`` is resized to and cropped (torchvision's arithmetic).

        The short side becomes ``size``, the long side ``int(size * long / short)``; the crop offset
        on each axis is ``int(round((resized - crop) / 2))``, Python's round (half to even).
        """
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.size, int(self.size * long / short)
        new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
        if new_width < self.crop_width or new_height < self.crop_height:
            raise ValueError(
                f"a {width}x{height} image resized to {new_width}x{new_height} is smaller than the "
                f"{self.crop_width}x{self.crop_height} crop (torchvision would pad it; not supported)"
            )
        top = int(round((new_height - self.crop_height) / 2.0))
        left = int(round((new_width - self.crop_width) / 2.0))
        return ResizeCrop(new_width, new_height, left, top, self.crop_width, self.crop_height)

    def pixels(self, image) -> torch.Tensor:
        """One PIL image (any mode) -> ``float32 [3, crop_height, crop_width]``."""
        import numpy as np
        from PIL import Image

        box = self.geometry(*image.size)
        if (box.resized_width, box.resized_height) != image.size:
            image = image.resize((box.resized_width, box.resized_height), Image.Resampling(self.resample))
        image = image.crop((box.left, box.top, box.left + box.width, box.top + box.height))
        # RGB only after the crop, as OpenAI's pipeline: palette and CMYK images are resized in their own mode.
        # ToTensor's x / 255 and Normalize's (x - mean) / std, each rounded to float32 as torch rounds them;
        # in numpy, which is single-threaded, so a busy machine's torch thread pool does not slow each image.
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255)
        normalised = (rgb - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))

    def __call__(self, images: Sequence[Any]) -> torch.Tensor:
        """PIL images -> ``float32 [n, 3, crop_height, crop_width]``."""
        return torch.stack([self.pixels(image) for image in images])


def _open_image(item: Any):
    """A PIL image as given, or an image file decoded in its stored mode (no RGB conversion yet)."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (str, os.PathLike)):
        with Image.open(item) as image:
            image.load()
            return image
    raise TypeError(f"expected a PIL image or an image path, got {type(item).__name__}")


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
    """A :class:`~chatir_env.protocols.Retriever` over HF ``CLIPModel`` (zero-shot), fed as ChatIR feeds OpenAI CLIP.

    Text is cleaned as ``clip.tokenize`` cleans it and cut at 77 tokens (the end token kept); images
    go through OpenAI's ``_transform`` (see the module docstring for each step and what HF's
    processor does otherwise). ``image_processor`` supplies only the settings (size, crop, mean,
    std, filter); a processor asking for steps OpenAI's pipeline lacks is refused.
    """

    PROCESSOR_KEYS = ("size", "crop_size", "do_center_crop", "image_mean", "image_std", "resample")
    # Named in the fingerprint: an index made by the HF processor's pipeline (RGB first, floored crop) is refused.
    IMAGE_PIPELINE = "openai-clip-transform"

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
        self.image_transform = ClipImageTransform.from_processor(self.image_processor)

    def _default_image_processor(self):
        from transformers import CLIPImageProcessorPil

        size = self.model.config.vision_config.image_size
        return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})

    def _fingerprint_extra(self) -> dict:
        return {**super()._fingerprint_extra(), "image_pipeline": self.IMAGE_PIPELINE}

    def _feature_dim(self) -> int:
        return int(self.model.config.projection_dim)

    def _image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=pixel_values))

    def _text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    def tokenize(self, texts: Sequence[str]):
        """``clip.tokenize(texts, truncate=True)``'s token ids, padded to the longest row.

        Args:
            texts: query strings.

        Returns:
            The tokenizer's ``BatchEncoding`` (``input_ids``, ``attention_mask``; torch tensors).
        """
        return super().tokenize([clean_text(text) for text in texts])

    def preprocess_images(self, items: Sequence[Any]) -> torch.Tensor:
        """PIL images or image paths -> OpenAI CLIP's pixels ``float32 [n, 3, h, w]`` (RGB after the crop)."""
        return self.image_transform([_open_image(item) for item in items])

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

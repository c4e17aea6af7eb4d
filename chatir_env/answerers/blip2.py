"""The BLIP2 answerer of ChatIR (HF ``Blip2ForConditionalGeneration``, OPT or FLAN-T5 language model).

Prompt: BLIP2's zero-shot VQA prompt, ``"Question: {question} Answer:"`` (LAVIS' ``prompt`` for
VQAv2; ChatIR's answerer sees the target image and the question, not the dialog history). The
template may also name ``{caption}`` and ``{dialog}`` (ChatIR's query string so far) for
experiments.

transformers 5 trap: the language model reads the image only through ``<image>`` placeholder
tokens in the prompt (``num_query_tokens`` of them, replaced by the Q-Former outputs). The
processor inserts them only when ``processor.num_query_tokens`` is set; without them
``masked_scatter`` has nothing to fill and the image is silently ignored. This class sets
``num_query_tokens`` from the model config, checks that the tokenizer's ``<image>`` id is the
config's ``image_token_index``, and checks every batch carries exactly ``num_query_tokens``
placeholders per row before it generates.

Decoding: greedy (``num_beams=1``, ``do_sample=False``), ``max_new_tokens=10``; answers are the
first line, stripped, lowercased, with a leading ``"answer:"`` removed.

Fingerprint: ``Blip2Answerer.fingerprint`` names what decides an answer (the weights, the model
config, the dtype, the image preprocessing, the prompt template and the decoding settings), so an
answer store written by one answerer is never read as another's (``chatir_env.answer_store``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..dialog import Dialog
from ..retrievers._hf_common import load_image, processor_settings, resolve_device, resolve_dtype, weights_fingerprint

__all__ = ["Blip2Answerer", "VQA_PROMPT", "clean_answer", "images_from_root"]

VQA_PROMPT = "Question: {question} Answer:"

_ANSWER_PREFIX = re.compile(r"^\s*answer\s*:\s*", re.IGNORECASE)


def clean_answer(text: str) -> str:
    """First line, stripped, lowercased, without a leading "answer:" (FLAN's habit)."""
    text = text.strip().split("\n", 1)[0]
    text = _ANSWER_PREFIX.sub("", text)
    return text.strip().lower()


def images_from_root(root: str | os.PathLike) -> Callable[[str], Any]:
    """An ``image_loader`` for corpus ids relative to ``root`` (e.g. ``<coco>/unlabeled2017/....jpg``)."""
    root = Path(root)

    def loader(image_id: str):
        return load_image(root / image_id)

    return loader


class Blip2Answerer:
    """An :class:`~chatir_env.protocols.Answerer`: BLIP2 answers each question about its target image.

    Args:
        model: ``Blip2ForConditionalGeneration``.
        processor: its ``Blip2Processor``.
        image_loader: corpus id -> PIL image (see :func:`images_from_root`).
        device, dtype: ``None`` -> CUDA if available, float32; pass ``torch.float16`` on a GPU.
        batch_size: questions per ``generate`` call.
        max_new_tokens: answer length cap (short VQA answers).
        prompt: a template with ``{question}`` (and optionally ``{caption}``, ``{dialog}``).
    """

    def __init__(
        self,
        model,
        processor,
        image_loader: Callable[[str], Any],
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 16,
        max_new_tokens: int = 10,
        prompt: str = VQA_PROMPT,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.processor = processor
        self.image_loader = image_loader
        self.batch_size = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)
        if "{question}" not in prompt:
            raise ValueError("the prompt template must contain '{question}'")
        self.prompt = prompt
        self.decoder_only = bool(self.model.config.use_decoder_only_language_model)

        config = self.model.config
        tokenizer = processor.tokenizer
        if getattr(processor, "num_query_tokens", None) is None:
            processor.num_query_tokens = config.num_query_tokens
        if processor.num_query_tokens != config.num_query_tokens:
            raise ValueError(
                f"processor.num_query_tokens={processor.num_query_tokens} but the model has "
                f"{config.num_query_tokens} query tokens"
            )
        image_token = getattr(processor.image_token, "content", processor.image_token)
        token_id = tokenizer.convert_tokens_to_ids(image_token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {image_token!r} token")
        if config.image_token_index is None:  # configs saved before transformers added it
            if token_id >= self.model.get_input_embeddings().num_embeddings:
                self.model.resize_token_embeddings(len(tokenizer))
            config.image_token_index = token_id
        if config.image_token_index != token_id:
            raise ValueError(
                f"the tokenizer's {image_token!r} id is {token_id} but the model's image_token_index is "
                f"{config.image_token_index}: the image would not reach the language model"
            )
        self.image_token_id = int(token_id)
        # Decoder-only models continue the sequence: pad on the left so every prompt ends at the edge.
        tokenizer.padding_side = "left" if self.decoder_only else "right"
        self._fingerprint: str | None = None

    # Image-processor settings that change the pixels BLIP2 sees.
    _PROCESSOR_KEYS = ("size", "resample", "do_resize", "do_rescale", "rescale_factor", "do_normalize", "image_mean",
                       "image_std", "do_convert_rgb")
    # Bump when the decoding or clean-up rules change what a given model answers.
    _ANSWER_RULES = "greedy-v1"

    @property
    def fingerprint(self) -> str:
        """``"blip2-<16 hex>"``: a digest of everything that decides the answers.

        It covers the weights (a strided sample of every tensor, as in the
        retrievers' fingerprints), the model config, the dtype, the image preprocessing, the prompt
        template, ``max_new_tokens`` and the decoding rules. Batch size and device are left out: they
        do not change which answer greedy decoding picks. Computed once, on first use.
        """
        if self._fingerprint is None:
            extra = {
                "dtype": str(self.dtype),
                "prompt": self.prompt,
                "max_new_tokens": self.max_new_tokens,
                "decoding": self._ANSWER_RULES,
                **processor_settings(self.processor.image_processor, self._PROCESSOR_KEYS),
            }
            self._fingerprint = weights_fingerprint("blip2", self.model, self.model.config, extra=extra)
        return self._fingerprint

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        image_loader: Callable[[str], Any],
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> "Blip2Answerer":
        """Load an HF directory or hub id (``Salesforce/blip2-opt-2.7b``, ``Salesforce/blip2-flan-t5-xxl``)."""
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        resolved = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, resolved)
        model = Blip2ForConditionalGeneration.from_pretrained(str(path), dtype=torch_dtype)
        processor = Blip2Processor.from_pretrained(str(path))
        return cls(model, processor, image_loader, device=resolved, dtype=torch_dtype, **kwargs)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path))
        self.processor.save_pretrained(str(path))

    # ------------------------------------------------------------------ prompts
    def format_prompt(self, question: str, dialog: Dialog | None = None) -> str:
        fields = {"question": question.strip()}
        if "{caption}" in self.prompt or "{dialog}" in self.prompt:
            fields["caption"] = dialog.caption if dialog is not None else ""
            fields["dialog"] = dialog.text() if dialog is not None else ""
        return self.prompt.format(**fields)

    def build_inputs(self, images: Sequence[Any], prompts: Sequence[str]):
        """Processor batch (image placeholders + prompt, pixels) on the model's device.

        Raises if a row does not carry exactly ``num_query_tokens`` image placeholders.
        """
        inputs = self.processor(images=list(images), text=list(prompts), padding="longest", return_tensors="pt")
        count = (inputs["input_ids"] == self.image_token_id).sum(dim=1)
        expected = self.model.config.num_query_tokens
        if not bool((count == expected).all()):
            raise RuntimeError(
                f"prompt rows carry {count.tolist()} image tokens, expected {expected}: the image would be ignored"
            )
        inputs = inputs.to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    def _batch_inputs(self, targets, dialogs, questions):
        if not (len(targets) == len(questions) and (dialogs is None or len(dialogs) == len(targets))):
            raise ValueError("targets, dialogs and questions must have the same length")
        images = [load_image(self.image_loader(t)) for t in targets]
        prompts = [self.format_prompt(q, dialogs[i] if dialogs is not None else None) for i, q in enumerate(questions)]
        return self.build_inputs(images, prompts)

    # ------------------------------------------------------------------ answering
    @torch.inference_mode()
    def answer(self, targets: Sequence[str], dialogs: Sequence[Dialog] | None, questions: Sequence[str]) -> list[str]:
        """One short answer per (target image, question), generated greedily in batches."""
        targets, questions = list(targets), list(questions)
        dialogs = list(dialogs) if dialogs is not None else None
        if not (len(targets) == len(questions) and (dialogs is None or len(dialogs) == len(targets))):
            raise ValueError("targets, dialogs and questions must have the same length")
        answers: list[str] = []
        for start in range(0, len(targets), self.batch_size):
            stop = start + self.batch_size
            inputs = self._batch_inputs(
                targets[start:stop], dialogs[start:stop] if dialogs is not None else None, questions[start:stop]
            )
            generated = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=self.processor.tokenizer.pad_token_id,
            )
            prompt_len = inputs["input_ids"].shape[1]
            if self.decoder_only and generated.shape[1] >= prompt_len and torch.equal(
                generated[:, :prompt_len], inputs["input_ids"]
            ):
                generated = generated[:, prompt_len:]  # some versions return the prompt as well
            texts = self.processor.tokenizer.batch_decode(generated, skip_special_tokens=True)
            answers.extend(clean_answer(t) for t in texts)
        return answers

    @torch.inference_mode()
    def next_token_logits(
        self, targets: Sequence[str], dialogs: Sequence[Dialog] | None, questions: Sequence[str]
    ) -> torch.Tensor:
        """Logits ``[n, vocab]`` of the first answer token (for scoring and for checks that the image is read)."""
        targets, questions = list(targets), list(questions)
        dialogs = list(dialogs) if dialogs is not None else None
        inputs = self._batch_inputs(targets, dialogs, questions)
        kwargs = {}
        if not self.decoder_only:
            start = self.model.config.text_config.decoder_start_token_id
            kwargs["decoder_input_ids"] = torch.full((len(targets), 1), start, dtype=torch.long, device=self.device)
        logits = self.model(**inputs, **kwargs).logits
        return logits[:, -1, :].float()

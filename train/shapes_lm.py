"""A tiny causal LM that speaks the Shapes question language, and its warm-start (SFT) data.

* ``build_shapes_tokenizer()``: a word-level tokenizer over every word of the Shapes captions, pool
  questions and answers, with a chat template (``<user> ... <eos> <assistant> ... <eos>``).
* ``build_shapes_lm(tokenizer, **config)``: a small Llama (RoPE, so left padding does not shift it),
  a few hundred thousand parameters by default.
* ``shapes_sft_dataset(...)``: prompt-completion chats for TRL's ``SFTTrainer``: prompt = caption and
  0..R-1 earlier (question, oracle answer) turns; completion = the next pool question.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..agents.lm import dialog_messages
from ..worlds.shapes_language import ANSWERS, NUMBERS, PLURAL, POOL_TEXTS, QUESTION_POOL
from ..worlds.shapes_scenes import BACKGROUNDS, COLOURS, SHAPES, SIZES

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>", "<system>", "<user>", "<assistant>")
PUNCTUATION = ("?", ":", ",", ".")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<' + message['role'] + '> ' + message['content'] + ' ' + eos_token + ' ' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<assistant> ' }}{% endif %}"
)
DEFAULT_LM = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
              "max_position_embeddings": 512}


def shapes_words() -> list[str]:
    """Every word the Shapes captions, questions and answers use (lower case, punctuation apart)."""
    caption_words = ["a", "an", "and", "on", "with", "shape", "shapes", "two", *NUMBERS, *SIZES, *COLOURS, *SHAPES,
                     *PLURAL.values(), *BACKGROUNDS]
    words: dict[str, None] = {}
    for text in (*POOL_TEXTS, *ANSWERS, *caption_words):
        for p in PUNCTUATION:
            text = text.replace(p, f" {p} ")
        for w in text.lower().split():
            words[w] = None
    return [w for w in words if w not in PUNCTUATION] + list(PUNCTUATION)


def build_shapes_tokenizer():
    """A word-level ``PreTrainedTokenizerFast`` with a chat template; eos (``<eos>``) ends a turn."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *shapes_words()])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(r"[?:,.]"), behavior="isolated"),
    ])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        clean_up_tokenization_spaces=True, model_max_length=DEFAULT_LM["max_position_embeddings"],
    )
    tok.add_special_tokens({"additional_special_tokens": ["<system>", "<user>", "<assistant>"]})
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def build_shapes_lm(tokenizer, **config: Any):
    """A small ``LlamaForCausalLM`` over ``tokenizer``'s vocabulary (fields override ``DEFAULT_LM``)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = {**DEFAULT_LM, **config}
    seed = fields.pop("seed", 0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **fields,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


SAMPLINGS = ("uniform", "kind_balanced")


def sample_question(rng: np.random.Generator, asked: set[int], sampling: str = "uniform") -> int:
    """A pool question index not in ``asked``: uniform over the pool, or uniform over kinds first."""
    free = [i for i in range(len(POOL_TEXTS)) if i not in asked]
    if sampling == "uniform":
        return int(free[rng.integers(len(free))])
    if sampling == "kind_balanced":
        kinds = sorted({QUESTION_POOL[i].kind for i in free})
        kind = kinds[rng.integers(len(kinds))]
        options = [i for i in free if QUESTION_POOL[i].kind == kind]
        return int(options[rng.integers(len(options))])
    raise ValueError(f"question sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")


def shapes_sft_examples(num_examples: int, max_rounds: int = 10, seed: int = 0, split: str = "train",
                        corpus_size: int = 50_000, sampling: str = "uniform", system_prompt: str | None = None) -> list[dict]:
    """Prompt-completion chats for the next question.

    Each has a random scene's caption, k ~ U{0..max_rounds-1} earlier turns (pool questions without repeats,
    the noiseless oracle's answers), and the next question as completion.
    """
    from ..worlds.shapes import scene_corpus

    _, table, _, caps = scene_corpus(split, corpus_size)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_examples):
        i = int(rng.integers(len(caps)))
        k = int(rng.integers(max_rounds))
        asked: list[int] = []
        for _ in range(k + 1):
            asked.append(sample_question(rng, set(asked), sampling))
        turns = [(POOL_TEXTS[q], ANSWERS[int(table[i, q])]) for q in asked[:k]]
        rows.append({
            "prompt": dialog_messages(caps[i], turns, system_prompt),
            "completion": [{"role": "assistant", "content": POOL_TEXTS[asked[k]]}],
        })
    return rows

"""Tiny random transformers models with tiny offline tokenizers, for tests and device checks.

No hub and no pretrained weights: every tokenizer is built from an in-memory vocabulary and every
model from a config with random weights. Used by ``tests/test_hf_models.py`` and
``bench/gpu_check.py``. transformers is imported inside the functions, so importing this module
is cheap.
"""

from __future__ import annotations

import string

import numpy as np
import torch

from .dialog import Dialog

__all__ = [
    "WORDS",
    "DIALOGS",
    "bert_tokenizer",
    "clip_tokenizer",
    "opt_tokenizer",
    "t5_tokenizer",
    "tiny_blip",
    "tiny_clip",
    "tiny_blip2",
    "noise_images",
]

WORDS = (
    "a an the is it are there red blue green white black cat dog sunny no yes what color how many "
    "one two three people image photo of in on man woman table street car bus"
).split()

DIALOGS = [
    Dialog("a red cat on a table", (("is it sunny?", "no"), ("how many people?", "two"))),
    Dialog("a man in the street"),
    Dialog("a blue bus", (("what color is the car?", "white"),)),
    Dialog("two dogs", (("is there a woman?", "yes"),)),
    Dialog("a photo of a green car", (("is it in the street?", "yes"), ("is there a bus?", "no"), ("people?", "one"))),
]


# --------------------------------------------------------------------------- tiny tokenizers
def bert_tokenizer():
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", "?", ".", *WORDS]
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})


def clip_tokenizer():
    from transformers import CLIPTokenizer

    chars = list(string.ascii_lowercase) + list(",.?!")
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def opt_tokenizer():
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import GPT2Tokenizer

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for c in sorted(ByteLevel.alphabet()):
        vocab[c] = len(vocab)
    return GPT2Tokenizer(vocab=vocab, merges=[], bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(c, -2.0) for c in string.ascii_lowercase + ",.?!:"]
    pieces += [("\u2581" + w, -1.5) for w in WORDS + ["question", "answer"]]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


# --------------------------------------------------------------------------- tiny models
def tiny_blip(seed=0, image_size=32, patch_size=16, text_positions=256, vocab_size=64):
    from transformers import BlipConfig, BlipForImageTextRetrieval

    torch.manual_seed(seed)
    config = BlipConfig(
        text_config=dict(
            vocab_size=vocab_size, hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=text_positions,
            bos_token_id=None, sep_token_id=3, pad_token_id=0,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=image_size, patch_size=patch_size, layer_norm_eps=1e-6, initializer_range=0.02,
        ),
        image_text_hidden_size=16,
    )
    model = BlipForImageTextRetrieval(config).eval()
    with torch.no_grad():  # LayerNorms start at (1, 0): make them tell norm1 from norm2 and the final norm
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.3)
                module.bias.normal_(0.0, 0.3)
    return model


def tiny_clip(tokenizer, seed=0):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=16,
        ),
        projection_dim=16,
    )
    return CLIPModel(config).eval()


def tiny_blip2(kind, seed=0, num_query_tokens=4):
    """A tiny BLIP2 (OPT or T5 language model) and its processor with the <image> token."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessorPil

    tokenizer = opt_tokenizer() if kind == "opt" else t5_tokenizer()
    image_processor = BlipImageProcessorPil(size={"height": 32, "width": 32})
    processor = Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=num_query_tokens)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vocab = len(tokenizer)
    if kind == "opt":
        text = dict(
            model_type="opt", vocab_size=vocab, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
            num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=128,
            pad_token_id=0, bos_token_id=1, eos_token_id=1,
        )
    else:
        text = dict(
            model_type="t5", vocab_size=vocab, d_model=32, d_kv=16, d_ff=64, num_layers=2,
            num_decoder_layers=2, num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        )
    torch.manual_seed(seed)
    config = Blip2Config(
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=16, initializer_range=0.02,
        ),
        qformer_config=dict(
            vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            encoder_hidden_size=32, cross_attention_frequency=1, max_position_embeddings=64,
        ),
        text_config=text,
        num_query_tokens=num_query_tokens,
        image_token_index=image_token_id,
    )
    model = Blip2ForConditionalGeneration(config).eval()
    return model, processor


# --------------------------------------------------------------------------- inputs
def noise_images(n, seed=0, sizes=((40, 30), (32, 32), (50, 64))):
    """``n`` RGB PIL images of uniform noise, cycling through ``sizes`` (width, height)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        out.append(Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)))
    return out

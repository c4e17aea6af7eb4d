"""The transformers-backed models (BLIP retriever + converter, CLIP retriever, BLIP2 answerer) on tiny
random models built from configs: no hub, no pretrained weights."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")
from transformers import BlipForImageTextRetrieval  # noqa: E402

from chatir_env.answerers.blip2 import Blip2Answerer, clean_answer  # noqa: E402
from chatir_env.retrievers.blip import BlipDialogRetriever  # noqa: E402
from chatir_env.retrievers.blip_convert import (  # noqa: E402
    BlipCheckpointError,
    convert_blip_state_dict,
    interpolate_pos_embed,
    load_original_blip,
)
from chatir_env.retrievers.clip import ClipRetriever  # noqa: E402
from chatir_env.testing import (  # noqa: E402  (tiny offline tokenizers and random models, shared with bench/gpu_check.py)
    DIALOGS,
    bert_tokenizer,
    clip_tokenizer,
    noise_images,
    tiny_blip,
    tiny_blip2,
    tiny_clip,
)

torch.set_num_threads(2)


# --------------------------------------------------------------------------- helpers
def assert_same(a, b):
    """Equal up to BLAS rounding: a loaded model's weights are the same numbers at another memory
    alignment, and CPU GEMV kernels may round the last bit differently (seen: 2e-8)."""
    assert a.shape == b.shape
    assert torch.allclose(a, b, rtol=0, atol=1e-6), (a - b).abs().max()


def assert_same_weights(m1, m2):
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    for key in s1:
        assert torch.equal(s1[key], s2[key]), key


# --------------------------------------------------------------------------- HF -> original BLIP (inverse map, written here)
def hf_to_original(state):
    out = {}
    for key, value in state.items():
        k = key
        k = k.replace("vision_model.embeddings.class_embedding", "visual_encoder.cls_token")
        k = k.replace("vision_model.embeddings.position_embedding", "visual_encoder.pos_embed")
        k = k.replace("vision_model.embeddings.patch_embedding", "visual_encoder.patch_embed.proj")
        k = k.replace("vision_model.post_layernorm", "visual_encoder.norm")
        k = re.sub(r"^vision_model\.encoder\.layers\.(\d+)\.", r"visual_encoder.blocks.\1.", k)
        k = k.replace(".layer_norm1.", ".norm1.").replace(".layer_norm2.", ".norm2.")
        k = k.replace(".self_attn.qkv.", ".attn.qkv.").replace(".self_attn.projection.", ".attn.proj.")
        assert not k.startswith("vision_model"), k
        out[k] = value.clone()
    return out


# --------------------------------------------------------------------------- (a) converter
def test_converter_gives_identical_model_and_features(tmp_path):
    hf = tiny_blip(seed=1)
    original = hf_to_original(hf.state_dict())
    assert "visual_encoder.blocks.1.attn.qkv.weight" in original and "visual_encoder.pos_embed" in original
    # what a real BLIP checkpoint carries beside the weights: the position_ids buffer, momentum copies, queues
    original["text_encoder.embeddings.position_ids"] = torch.arange(256).unsqueeze(0)
    original["visual_encoder_m.cls_token"] = torch.zeros(1, 1, 32)
    original["text_queue"] = torch.zeros(16, 8)
    path = tmp_path / "chatir_weights.pth"
    torch.save({"model": original, "epoch": 3}, path)  # wrapped as BLIP's train scripts save it

    tokenizer = bert_tokenizer()
    converted = BlipDialogRetriever.from_original_checkpoint(path, config=hf.config, tokenizer=tokenizer, device="cpu")
    for key, value in hf.state_dict().items():
        assert torch.equal(converted.model.state_dict()[key], value), key
    reference = BlipDialogRetriever(hf, tokenizer, device="cpu")
    images = noise_images(3)
    assert torch.equal(converted.encode_images(images), reference.encode_images(images))
    assert torch.equal(converted.encode_dialogs(DIALOGS), reference.encode_dialogs(DIALOGS))
    assert converted.fingerprint == reference.fingerprint

    # the same from safetensors (no wrapper)
    from safetensors.torch import save_file

    st = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in hf_to_original(hf.state_dict()).items()}, str(st))
    again = load_original_blip(st, config=hf.config)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in hf.state_dict().items())


def test_image_feature_is_projected_class_token_not_pooler():
    hf = tiny_blip(seed=2)
    retriever = BlipDialogRetriever(hf, bert_tokenizer(), device="cpu")
    image = noise_images(1)[0]
    pixels = retriever.image_processor([image], return_tensors="pt")["pixel_values"]
    assert pixels.shape[-2:] == (32, 32)
    with torch.no_grad():
        out = hf.vision_model(pixel_values=pixels)
        want = F.normalize(hf.vision_proj(out.last_hidden_state[:, 0]), dim=-1)
        pooled = F.normalize(hf.vision_proj(out.pooler_output), dim=-1)
    got = retriever.encode_images([image])
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, pooled, atol=1e-4)
    # the text side runs without an image: equal to HF's own ITC path (use_itm_head=False)
    tokens = retriever.tokenizer(["a red cat"], return_tensors="pt")
    with torch.no_grad():
        itc = hf(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=pixels,
                 use_itm_head=False)
    assert torch.allclose(itc.itm_score, got @ retriever.encode_texts(["a red cat"]).T, atol=1e-5)


def test_position_table_interpolated_to_target_grid():
    # a 577-row table (384 px, patch 16) -> the 224 px grid (197 rows), class row kept
    table = torch.randn(1, 577, 32)
    small = interpolate_pos_embed(table, 197)
    assert small.shape == (1, 197, 32)
    assert torch.equal(small[:, 0], table[:, 0])
    grid = table[:, 1:].reshape(1, 24, 24, 32).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(14, 14), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 196, 32)
    assert torch.allclose(small[:, 1:], ref)

    # a whole checkpoint made for a larger image grid (64 px: 17 rows) loads into a 32 px config (5 rows)
    big = tiny_blip(seed=3, image_size=64)
    target = tiny_blip(seed=4, image_size=32)
    original = hf_to_original(big.state_dict())
    assert original["visual_encoder.pos_embed"].shape == (1, 17, 32)
    loaded = load_original_blip(original, config=target.config)
    pos = loaded.vision_model.embeddings.position_embedding
    assert pos.shape == (1, 5, 32)
    assert torch.allclose(pos, interpolate_pos_embed(original["visual_encoder.pos_embed"], 5))
    assert torch.equal(loaded.vision_proj.weight, big.vision_proj.weight)


def test_chatir_config_takes_a_384px_checkpoint_layout():
    """The default (ChatIR) config at full size, on the meta device (no memory, no weights): an
    original ViT-B/16 key set with a 577-row table converts and fits every shape."""
    from chatir_env.retrievers.blip_convert import chatir_blip_config

    config = chatir_blip_config()
    assert config.vision_config.image_size == 224 and config.vision_config.layer_norm_eps == 1e-6
    assert config.text_config.num_attention_heads == 12 and config.text_config.vocab_size == 30524
    with torch.device("meta"):
        model = BlipForImageTextRetrieval(config)
    expected = model.state_dict()
    original = hf_to_original(expected)
    original["visual_encoder.pos_embed"] = torch.empty(1, 577, 768, device="meta")
    original["text_encoder.embeddings.position_ids"] = torch.empty(1, 512, device="meta")
    converted = convert_blip_state_dict({"model": original}, expected=expected)
    assert converted["vision_model.embeddings.position_embedding"].shape == (1, 197, 768)
    assert converted.keys() == expected.keys()


def test_converter_names_unknown_missing_and_misshapen_keys():
    hf = tiny_blip(seed=5)
    expected = hf.state_dict()
    original = hf_to_original(expected)

    bad = dict(original, **{"visual_encoder.blocks.0.attn.relative_bias": torch.zeros(3)})
    with pytest.raises(BlipCheckpointError, match=r"unknown key.*visual_encoder\.blocks\.0\.attn\.relative_bias"):
        convert_blip_state_dict(bad, expected=expected)
    bad = dict(original, **{"text_decoder.cls.predictions.bias": torch.zeros(3)})
    with pytest.raises(BlipCheckpointError, match=r"text_decoder\.cls\.predictions\.bias"):
        convert_blip_state_dict(bad, expected=expected)

    missing = dict(original)
    del missing["visual_encoder.blocks.1.mlp.fc2.weight"]
    with pytest.raises(BlipCheckpointError, match=r"missing key.*vision_model\.encoder\.layers\.1\.mlp\.fc2\.weight"):
        convert_blip_state_dict(missing, expected=expected)

    wrong = dict(original, **{"text_proj.weight": torch.zeros(8, 32)})
    with pytest.raises(BlipCheckpointError, match=r"text_proj\.weight"):
        load_original_blip(wrong, config=hf.config)

    with pytest.raises(BlipCheckpointError, match="not a BLIP state dict"):
        convert_blip_state_dict({"model": {"epoch": 3}})


# --------------------------------------------------------------------------- (b) save -> load round trips
def test_blip_round_trip_and_fingerprints(tmp_path):
    tokenizer = bert_tokenizer()
    first = BlipDialogRetriever(tiny_blip(seed=6), tokenizer, device="cpu", batch_size=2)
    first.save_pretrained(tmp_path / "blip")
    loaded = BlipDialogRetriever.from_pretrained(tmp_path / "blip", device="cpu", batch_size=2)
    assert_same_weights(loaded.model, first.model)
    images = noise_images(3)
    assert_same(loaded.encode_images(images), first.encode_images(images))
    assert_same(loaded.encode_dialogs(DIALOGS), first.encode_dialogs(DIALOGS))
    assert loaded.fingerprint == first.fingerprint
    assert loaded.fingerprint.startswith("BlipDialogRetriever-")
    other = BlipDialogRetriever(tiny_blip(seed=7), tokenizer, device="cpu")
    assert other.fingerprint != first.fingerprint
    assert loaded.dim == 16 and loaded.device == torch.device("cpu")
    from chatir_env.protocols import Retriever

    assert isinstance(loaded, Retriever)


def test_clip_round_trip_and_fingerprints(tmp_path):
    tokenizer = clip_tokenizer()
    first = ClipRetriever(tiny_clip(tokenizer, seed=8), tokenizer, device="cpu")
    first.save_pretrained(tmp_path / "clip")
    loaded = ClipRetriever.from_pretrained(tmp_path / "clip", device="cpu")
    assert_same_weights(loaded.model, first.model)
    images = noise_images(3)
    assert_same(loaded.encode_images(images), first.encode_images(images))
    assert_same(loaded.encode_dialogs(DIALOGS), first.encode_dialogs(DIALOGS))
    assert loaded.fingerprint == first.fingerprint
    assert ClipRetriever(tiny_clip(tokenizer, seed=9), tokenizer, device="cpu").fingerprint != first.fingerprint
    from chatir_env.protocols import Retriever

    assert isinstance(loaded, Retriever) and loaded.dim == 16


@pytest.mark.parametrize("kind", ["opt", "t5"])
def test_blip2_round_trip(tmp_path, kind):
    model, processor = tiny_blip2(kind, seed=10)
    images = {"a.jpg": noise_images(1, seed=1)[0], "b.jpg": noise_images(1, seed=2)[0]}
    first = Blip2Answerer(model, processor, images.__getitem__, device="cpu")
    first.save_pretrained(tmp_path / kind)
    loaded = Blip2Answerer.from_pretrained(tmp_path / kind, images.__getitem__, device="cpu")
    targets, questions = ["a.jpg", "b.jpg"], ["is it sunny?", "what color is the car?"]
    assert_same_weights(loaded.model, first.model)
    assert_same(loaded.next_token_logits(targets, None, questions), first.next_token_logits(targets, None, questions))
    assert loaded.answer(targets, [DIALOGS[0], DIALOGS[1]], questions) == first.answer(targets, None, questions)
    from chatir_env.protocols import Answerer

    assert isinstance(loaded, Answerer)


# --------------------------------------------------------------------------- (c) BLIP2 reads the image
@pytest.mark.parametrize("kind", ["opt", "t5"])
def test_blip2_answer_depends_on_image(kind):
    model, processor = tiny_blip2(kind, seed=11)
    images = {"one.jpg": noise_images(1, seed=3)[0], "two.jpg": noise_images(1, seed=4)[0]}
    answerer = Blip2Answerer(model, processor, images.__getitem__, device="cpu", batch_size=4)

    prompts = [answerer.format_prompt("is it sunny?")] * 2
    assert prompts[0] == "Question: is it sunny? Answer:"
    inputs = answerer.build_inputs(list(images.values()), prompts)
    n_query = model.config.num_query_tokens
    image_id = model.config.image_token_index
    assert ((inputs["input_ids"] == image_id).sum(dim=1) == n_query).all()  # the prompt carries the image tokens

    logits = answerer.next_token_logits(["one.jpg", "two.jpg"], None, ["is it sunny?"] * 2)
    assert logits.shape[0] == 2 and not torch.allclose(logits[0], logits[1], atol=1e-6)
    # same image twice in a batch -> the same logits (padding/batching does not leak across rows)
    same = answerer.next_token_logits(["one.jpg", "one.jpg"], None, ["is it sunny?"] * 2)
    assert torch.allclose(same[0], same[1], atol=1e-5)

    # batched prompts of different lengths (left padding for OPT, right for T5) == one at a time
    questions = ["is it sunny?", "how many people are in the street?", "what color?"]
    targets = ["one.jpg", "two.jpg", "one.jpg"]
    batched = answerer.next_token_logits(targets, None, questions)
    single = torch.cat([answerer.next_token_logits([t], None, [q]) for t, q in zip(targets, questions)])
    assert torch.allclose(batched, single, atol=1e-5)

    answers = answerer.answer(["one.jpg", "two.jpg", "one.jpg"], None,
                              ["is it sunny?", "is it sunny?", "how many people are there?"])
    assert len(answers) == 3 and all(isinstance(a, str) and a == a.strip().lower() for a in answers)

    # the trap: without the placeholders the image never reaches the language model
    processor.num_query_tokens = None
    bare = processor(images=list(images.values()), text=prompts, padding="longest", return_tensors="pt")
    assert not (bare["input_ids"] == image_id).any()
    with pytest.raises(RuntimeError, match="image tokens"):
        answerer.build_inputs(list(images.values()), prompts)


def test_blip2_refuses_mismatched_image_token():
    model, processor = tiny_blip2("opt", seed=12)
    model.config.image_token_index = 5
    with pytest.raises(ValueError, match="image_token_index"):
        Blip2Answerer(model, processor, lambda _: None, device="cpu")


def test_clean_answer():
    assert clean_answer("  Answer: Yes\nmore") == "yes"
    assert clean_answer("answer:two") == "two"
    assert clean_answer(" No ") == "no"


# --------------------------------------------------------------------------- (d) truncation
def test_clip_truncates_to_77_tokens():
    tokenizer = clip_tokenizer()
    retriever = ClipRetriever(tiny_clip(tokenizer, seed=13), tokenizer, device="cpu")
    long_a = "a red cat, " * 40 + "is it sunny? no"
    long_b = "a red cat, " * 40 + "is there a dog? yes"
    assert len(tokenizer(long_a)["input_ids"]) > 77
    feats = retriever.encode_texts([long_a, long_b, "a red cat"])
    assert feats.shape == (3, 16)
    assert torch.allclose(feats[0], feats[1])  # they differ only after token 77
    assert not torch.allclose(feats[0], feats[2])
    assert retriever.max_length == 77


def test_blip_truncates_to_200_tokens():
    tokenizer = bert_tokenizer()
    retriever = BlipDialogRetriever(tiny_blip(seed=14, text_positions=512), tokenizer, device="cpu")
    assert retriever.max_length == 200
    head = " ".join(["a red cat ,"] * 60)
    assert len(tokenizer(head)["input_ids"]) > 200
    feats = retriever.encode_texts([head + " is it sunny ? no", head + " two dogs"])
    assert torch.allclose(feats[0], feats[1])


# --------------------------------------------------------------------------- (e) unit norm, batching
def test_features_unit_norm_and_batch_invariant(tmp_path):
    images = noise_images(5, seed=7)
    paths = []
    for i, image in enumerate(images[:2]):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    items = paths + images[2:]  # file paths and PIL images mixed

    tok_b, tok_c = bert_tokenizer(), clip_tokenizer()
    for make in (
        lambda bs: BlipDialogRetriever(tiny_blip(seed=15), tok_b, device="cpu", batch_size=bs),
        lambda bs: ClipRetriever(tiny_clip(tok_c, seed=16), tok_c, device="cpu", batch_size=bs),
    ):
        batched, single = make(3), make(1)
        img_b, img_s = batched.encode_images(items), single.encode_images(items)
        txt_b, txt_s = batched.encode_dialogs(DIALOGS), single.encode_dialogs(DIALOGS)
        for feats in (img_b, txt_b):
            assert feats.shape == (5, batched.dim) and feats.dtype == torch.float32
            assert torch.allclose(feats.norm(dim=-1), torch.ones(5), atol=1e-5)
        assert torch.allclose(img_b, img_s, atol=1e-5)
        assert torch.allclose(txt_b, txt_s, atol=1e-5)
        assert batched.encode_dialogs([]).shape == (0, batched.dim)
        # encode_dialogs is the encoder of ChatIR's query string
        assert torch.equal(batched.encode_dialogs(DIALOGS[:2]), batched.encode_texts([d.text() for d in DIALOGS[:2]]))

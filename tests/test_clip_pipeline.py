"""The CLIP baseline is fed as ChatIR feeds OpenAI's ``clip`` package: token ids, crop offsets, RGB order, precision.

Expected values never come from the package's own code: token ids are written out by hand for a
tiny byte-level vocabulary, or computed by this file's own implementation of the steps OpenAI's
``SimpleTokenizer`` documents; crop offsets are worked out in the comments; pixels are built here
with plain PIL calls at hand-given offsets.
"""

from __future__ import annotations

import html
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
import ftfy  # noqa: E402
import regex  # noqa: E402
from PIL import Image  # noqa: E402

from chatir_env.retrievers.clip import ClipImageTransform, ClipRetriever, clean_text  # noqa: E402
from chatir_env.testing import tiny_clip  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's Normalize constants
STD = (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------- a tiny byte-level BPE vocabulary
def byte_chars() -> dict[int, str]:
    """GPT-2's byte -> printable character table, as its paper and OpenAI's tokenizer describe it:
    the printable bytes '!'..'~', '¡'..'¬', '®'..'ÿ' stand for themselves, the other 68 bytes take
    chr(256), chr(257), ... in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_CHAR = byte_chars()
# A few merges, so the BPE step does something: "it</w>", "red</w>", "cat</w>".
MERGES = [("i", "t</w>"), ("r", "e"), ("re", "d</w>"), ("c", "a"), ("ca", "t</w>")]
# OpenAI's vocabulary layout: the 256 byte characters, the same with "</w>", one token per merge, then the two specials.
VOCAB_TOKENS = [*BYTE_CHAR.values(), *(c + "</w>" for c in BYTE_CHAR.values()), *("".join(m) for m in MERGES), SOT, EOT]
VOCAB = {token: i for i, token in enumerate(VOCAB_TOKENS)}
RANKS = {pair: rank for rank, pair in enumerate(MERGES)}


def tiny_tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=dict(VOCAB), merges=list(MERGES))


@pytest.fixture(scope="module")
def retriever():
    tokenizer = tiny_tokenizer()
    return ClipRetriever(tiny_clip(tokenizer, seed=3), tokenizer, device="cpu")


def ids(tokens: list[str]) -> list[int]:
    return [VOCAB[t] for t in tokens]


def token_rows(encoding) -> list[list[int]]:
    return [row[: int(mask.sum())].tolist() for row, mask in zip(encoding["input_ids"], encoding["attention_mask"])]


# --------------------------------------------------------------------------- OpenAI's documented steps, reimplemented
WORD = regex.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+", regex.IGNORECASE
)


def reference_clean(text: str) -> str:
    """basic_clean (ftfy.fix_text, html.unescape twice, strip), whitespace_clean (\\s+ -> " ", strip), lower."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


def reference_bpe(word: str) -> list[str]:
    symbols = [BYTE_CHAR[b] for b in word.encode("utf-8")]
    symbols[-1] += "</w>"
    while len(symbols) > 1:
        best = min(zip(symbols, symbols[1:]), key=lambda pair: RANKS.get(pair, float("inf")))
        if best not in RANKS:
            break
        merged, i = [], 0
        while i < len(symbols):  # every occurrence of the best pair, left to right, without overlaps
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def reference_tokenize(text: str, context_length: int = 77) -> list[int]:
    """clip.tokenize(text, truncate=True) for the tiny vocabulary, without padding."""
    tokens = [SOT] + [s for word in WORD.findall(reference_clean(text)) for s in reference_bpe(word)] + [EOT]
    if len(tokens) > context_length:
        tokens = tokens[:context_length]
        tokens[-1] = EOT
    return ids(tokens)


# --------------------------------------------------------------------------- token ids
# Each case: the raw string, then the tokens OpenAI's pipeline gives it, derived by hand.
HAND_CASES = [
    # U+2019 becomes "'" (ftfy uncurls quotes); "'s" is a word of its own; "it</w>" and "red</w>" are merges.
    ("It\u2019s red", [SOT, "it</w>", "'", "s</w>", "red</w>", EOT]),
    # "&amp;" is "&" after unescaping.
    ("a &amp; b", [SOT, "a</w>", "&</w>", "b</w>", EOT]),
    # nested entities: ftfy itself unescapes them all ...
    ("&amp;amp; cat", [SOT, "&</w>", "cat</w>", EOT]),
    # ... except in text holding a "<", which it leaves alone: then html.unescape twice,
    # "&amp;amp;" -> "&amp;" -> "&".
    ("x < y &amp;amp; cat", [SOT, "x</w>", "<</w>", "y</w>", "&</w>", "cat</w>", EOT]),
    # mojibake "Ã©" (UTF-8 "é" read as Latin-1) is repaired to "é", bytes C3 A9: the characters "Ã" and "©";
    # "c" + "a" is a merge.
    ("cafÃ© red", [SOT, "ca", "f", "Ã", "©</w>", "red</w>", EOT]),
    # the mojibake of U+2019 ("â€™") is repaired, then uncurled.
    ("itâ€™s", [SOT, "it</w>", "'", "s</w>", EOT]),
    # whitespace runs are one space; upper case is lowered.
    ("  RED \t\n  cat  ", [SOT, "red</w>", "cat</w>", EOT]),
]


@pytest.mark.parametrize("text, tokens", HAND_CASES)
def test_token_ids_match_hand_derived_ones(retriever, text, tokens):
    assert token_rows(retriever.tokenize([text])) == [ids(tokens)]
    assert reference_tokenize(text) == ids(tokens)  # the reimplementation agrees with the hand derivation


def test_uncleaned_strings_would_get_other_ids(retriever):
    """The cases above discriminate: the HF tokenizer alone (no ftfy, no unescaping) gives other ids."""
    for text, tokens in HAND_CASES[:6]:
        plain = retriever.tokenizer([text], padding="longest", return_tensors="pt")
        assert token_rows(plain) != [ids(tokens)], text
    # U+2019 is the bytes E2 80 99: "â", then two of the 68 remapped bytes.
    plain = retriever.tokenizer(["it\u2019s"])["input_ids"]
    assert plain == [ids([SOT, "it</w>", "â", BYTE_CHAR[0x80], BYTE_CHAR[0x99] + "</w>", "s</w>", EOT])]


TRICKY = [
    "a cat\u2019s toy, is it red? no",
    "\u201cquoted\u201d words &lt;b&gt; and &#39;s",
    "\ufb01ne \uff46\uff55\uff4c\uff4c width",  # a ligature and full-width letters (ftfy folds both)
    "numbers 12 and 3.5, don't, we'll, they're",
    "caf\u00e9 na\u00efve \u00c3\u00a9 \u00e2\u20ac\u2122",
    "tabs\tand\nnew lines\r\n and\u00a0no-break spaces",
    "",
]


@pytest.mark.parametrize("text", TRICKY)
def test_token_ids_match_a_reimplementation_of_clip_tokenize(retriever, text):
    assert token_rows(retriever.tokenize([text])) == [reference_tokenize(text)]


def test_truncation_keeps_76_tokens_then_the_end_token(retriever):
    text = "red cat, " * 30  # three tokens a repeat ("red</w>", "cat</w>", ",</w>"): 90, plus the two specials
    full = [SOT] + ["red</w>", "cat</w>", ",</w>"] * 30 + [EOT]
    (row,) = token_rows(retriever.tokenize([text]))
    assert len(full) == 92 and row == ids(full[:76] + [EOT]) == reference_tokenize(text)


def test_encode_texts_uses_the_cleaned_ids(retriever):
    """A curly and a straight apostrophe give the same feature (they are the same ids after cleaning)."""
    curly, straight, other = retriever.encode_texts(["it\u2019s red", "it's red", "its red"])
    assert torch.equal(curly, straight)
    assert not torch.allclose(curly, other)


def test_clean_text_matches_the_reference():
    for text in [t for t, _ in HAND_CASES] + TRICKY:
        assert clean_text(text) == reference_clean(text)


# --------------------------------------------------------------------------- the released dialogs
def _release_files():
    from chatir_env.data.chatir_files import default_data_dir

    found = default_data_dir()
    names = ("ChatGPT_BLIP2.json", "Human_BLIP2.json")
    return [found / n for n in names] if found and all((found / n).is_file() for n in names) else None


RELEASE = _release_files()


@pytest.mark.skipif(RELEASE is None, reason="ChatGPT_BLIP2.json / Human_BLIP2.json of the ChatIR release are not here "
                    "(set CHATIR_DATA or run `chatir download --data-dir ../shared/data/chatir`)")
def test_round_strings_that_cleaning_changes():
    """ChatIR's query strings (", ".join(dialog[:t + 1]), t = 0..10) of the ChatGPT and Human files:
    2 x 2,064 x 11 = 45,408. Cleaning changes 95 of them beyond whitespace and case, every one through
    U+2019 (with CLIP's full vocabulary a few of those keep their ids: the change lies past the 77-token
    cut); the package's cleaning equals the reimplementation on the strings compared."""
    strings = []
    for path in RELEASE:
        for entry in json.loads(path.read_text()):
            strings += [", ".join(entry["dialog"][: t + 1]) for t in range(11)]
    assert len(strings) == 45_408
    plain = [" ".join(s.split()).lower() for s in strings]  # what the HF tokenizer's normaliser does anyway
    cleaned = [clean_text(s) for s in strings]
    changed = [s for s, p, c in zip(strings, plain, cleaned) if p != c]
    assert len(changed) == 95 and all("\u2019" in s for s in changed)
    assert sum("\u2019" in s for s in strings) == 95
    # the full comparison with the reimplementation, on every 16th string to keep the test short
    assert all(cleaned[k] == reference_clean(strings[k]) for k in range(0, len(strings), 16))


# --------------------------------------------------------------------------- crop offsets
OPENAI_224 = ClipImageTransform(size=224, crop_height=224, crop_width=224, mean=MEAN, std=STD)

# (width, height) -> (resized width, resized height, left, top), by hand:
# the short side becomes 224, the long one int(224 * long / short); offset = round((L - 224) / 2), half to even.
CROPS = {
    # 224 * 640 / 427 = 335.74 -> 335; (335 - 224) / 2 = 55.5 -> 56 (floor would give 55)
    (640, 427): (335, 224, 56, 0),
    # the same, standing: the offset is vertical
    (427, 640): (224, 335, 0, 56),
    # 224 * 640 / 433 = 331.09 -> 331; 107 / 2 = 53.5 -> 54 (floor 53)
    (640, 433): (331, 224, 54, 0),
    # 224 * 640 / 478 = 299.92 -> 299; 75 / 2 = 37.5 -> 38 (floor 37)
    (640, 478): (299, 224, 38, 0),
    # 224 * 640 / 359 = 399.33 -> 399; 175 / 2 = 87.5 -> 88 (floor 87)
    (640, 359): (399, 224, 88, 0),
    # 224 * 640 / 425 = 337.32 -> 337; 113 / 2 = 56.5 -> 56, half to even (torchvision 0.8's half-up gave 57)
    (640, 425): (337, 224, 56, 0),
    # 224 * 640 / 480 = 298.67 -> 298; 74 / 2 = 37 exactly
    (640, 480): (298, 224, 37, 0),
    # already 224 on the short side: no resize; (300 - 224) / 2 = 38
    (224, 300): (224, 300, 0, 38),
}


@pytest.mark.parametrize("size, expected", list(CROPS.items()))
def test_resize_and_crop_geometry(size, expected):
    box = OPENAI_224.geometry(*size)
    assert (box.resized_width, box.resized_height, box.left, box.top) == expected
    assert (box.width, box.height) == (224, 224)


def by_hand(image: Image.Image, resized: tuple[int, int], left: int, top: int, crop: int) -> torch.Tensor:
    """Resize (PIL bicubic), crop at the given offset, RGB, then ToTensor and Normalize as torchvision
    computes them (uint8 -> float32, divided by 255, mean subtracted, divided by std): OpenAI's steps."""
    if image.size != resized:
        image = image.resize(resized, Image.BICUBIC)
    image = image.crop((left, top, left + crop, top + crop)).convert("RGB")
    tensor = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    return tensor.sub(torch.tensor(MEAN).view(3, 1, 1)).div(torch.tensor(STD).view(3, 1, 1))


def noise(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "P":
        image = Image.fromarray(rng.integers(0, 256, size=(h, w), dtype=np.uint8), mode="L").convert("P")
        image.putpalette(rng.integers(0, 256, size=768, dtype=np.uint8).tobytes())
        return image
    bands = {"RGB": 3, "CMYK": 4}[mode]
    return Image.frombytes(mode, size, rng.integers(0, 256, size=(h, w, bands), dtype=np.uint8).tobytes())


def test_pixels_at_torchvisions_offset_for_a_640x427_image():
    image = noise("RGB", (640, 427), seed=1)
    got = OPENAI_224.pixels(image)
    assert got.shape == (3, 224, 224) and got.dtype == torch.float32
    assert torch.equal(got, by_hand(image, (335, 224), 56, 0, 224))  # bit for bit
    assert not torch.allclose(got, by_hand(image, (335, 224), 55, 0, 224), atol=1e-3)  # the floored offset


# --------------------------------------------------------------------------- RGB after the crop
@pytest.mark.parametrize("mode", ["P", "CMYK"])
def test_rgb_conversion_comes_after_the_crop(retriever, tmp_path, mode):
    # The tiny CLIP takes 32 px: a 64x48 image becomes int(32 * 64 / 48) = 42 x 32; (42 - 32) / 2 = 5.
    image = noise(mode, (64, 48), seed=2)
    expected = by_hand(image, (42, 32), 5, 0, 32)
    converted_first = by_hand(image.convert("RGB"), (42, 32), 5, 0, 32)
    assert not torch.allclose(expected, converted_first, atol=1e-3)  # the order matters for this image
    path = tmp_path / f"image.{'png' if mode == 'P' else 'tiff'}"
    image.save(path)
    from chatir_env.data.images import ImageCorpus

    loaded = ImageCorpus.from_folder(tmp_path).load(path.name)
    assert loaded.mode == mode  # the corpus hands over the stored mode
    for item in (image, path, loaded):
        got = retriever.preprocess_images([item])
        assert got.shape == (1, 3, 32, 32)
        assert torch.equal(got[0], expected), item


def test_hf_processor_settings_that_openai_lacks_are_refused():
    from transformers import CLIPImageProcessorPil

    tokenizer = tiny_tokenizer()
    model = tiny_clip(tokenizer, seed=4)
    for settings, word in (({"do_center_crop": False}, "do_center_crop"), ({"size": {"height": 32, "width": 32}}, "size")):
        kwargs = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}} | settings
        processor = CLIPImageProcessorPil(**kwargs)
        with pytest.raises(ValueError, match=word):
            ClipRetriever(model, tokenizer, processor, device="cpu")


# --------------------------------------------------------------------------- configs/visdial_clip.yaml
def _index_command(config_text: str) -> list[str]:
    """The `chatir index ...` command written in the config's header comment, as argv."""
    lines = [line.lstrip("#").strip() for line in config_text.splitlines() if line.startswith("#")]
    start = next(i for i, line in enumerate(lines) if line.startswith("chatir index"))
    command = ""
    for line in lines[start:]:
        command += " " + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            break
    return shlex.split(command)[1:]  # without "chatir": starts with "index"


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_config_worlds_and_its_index_command_ask_the_same_clip_precision():
    """On the config's own device (CUDA, where float16 is honoured) every CLIP world resolves the
    precision the header's `chatir index` command builds with."""
    import yaml

    from chatir_env.retrievers._hf_common import resolve_dtype

    text = (REPO / "configs" / "visdial_clip.yaml").read_text()
    argv = _index_command(text)
    index_dtype = None  # no --retriever-arg dtype=...: the retriever's default, float32
    for i, arg in enumerate(argv):
        if arg == "--retriever-arg" and argv[i + 1].startswith("dtype="):
            index_dtype = argv[i + 1].split("=", 1)[1]
    assert argv[0] == "index" and _option(argv, "--retriever") == "clip"
    for world in yaml.safe_load(text)["worlds"]:
        args = world["args"]
        assert args["retriever"] == "clip" and args["index"] == _option(argv, "--out")
        device = torch.device(args.get("device") or _option(argv, "--device") or "cuda")
        assert resolve_dtype(args.get("dtype"), device) == resolve_dtype(index_dtype, device) == torch.float32, world["name"]


def _fake_release(root: Path, images: list[str], targets: list[str]) -> Path:
    """Release files in ChatIR's format for a few targets (their own made-up dialogs)."""
    from chatir_env.data.chatir_files import DIALOG_FILES, SEARCH_SPACE_FILE

    data = root / "chatir"
    data.mkdir()
    (data / SEARCH_SPACE_FILE).write_text(json.dumps(images))
    entries = [{"img": t, "dialog": [f"a red cat number {k}"] + [f"is it red {r}? yes" for r in range(10)]}
               for k, t in enumerate(targets)]
    for name in DIALOG_FILES:
        (data / name).write_text(json.dumps(entries))
    return data


def test_worlds_built_from_the_config_accept_the_index_chatir_index_builds(tmp_path):
    """configs/visdial_clip.yaml with its paths pointed at a tiny random CLIP, a tiny BLIP2 and generated
    images: `chatir index` run as the header says, then both worlds load that index (no fingerprint refusal)."""
    import yaml

    from chatir_env.cli import main as cli_main
    from chatir_env.testing import tiny_blip2
    from chatir_env.worlds import build_world

    ids = [f"unlabeled2017/{k:012d}.jpg" for k in range(6)]
    coco = tmp_path / "coco"
    (coco / "unlabeled2017").mkdir(parents=True)
    for k, image_id in enumerate(ids):
        noise("RGB", (40 + 3 * k, 32), seed=10 + k).save(coco / image_id)
    data = _fake_release(tmp_path, ids, ids[:3])
    clip_dir = tmp_path / "clip"
    tokenizer = tiny_tokenizer()
    ClipRetriever(tiny_clip(tokenizer, seed=5), tokenizer, device="cpu").save_pretrained(clip_dir)
    blip2_dir = tmp_path / "blip2"
    model, processor = tiny_blip2("t5", seed=6)
    model.save_pretrained(str(blip2_dir))
    processor.save_pretrained(str(blip2_dir))

    text = (REPO / "configs" / "visdial_clip.yaml").read_text()
    paths = {"models/clip-vit-base-patch16": clip_dir, "data/coco": coco, "data/chatir": data,
             "data/chatir/Search_Space_val_50k.json": data / "Search_Space_val_50k.json",
             "runs/index/visdial_clip": tmp_path / "index" / "visdial_clip", "models/blip2-flan-t5-xxl": blip2_dir}
    argv = [str(paths.get(a, a)) for a in _index_command(text)]
    assert all(str(p) in argv for k, p in paths.items() if k.startswith(("models/clip", "data/coco", "runs/")))
    if "--device" not in argv:
        argv += ["--device", "cpu"]  # the header leaves the device to the retriever: CUDA where there is one
    argv[argv.index("--device") + 1] = "cpu"
    assert cli_main([*argv, "--no-progress"]) == 0

    for world in yaml.safe_load(text)["worlds"]:
        args = {k: str(paths.get(v, v)) if isinstance(v, str) else v for k, v in world["args"].items()}
        args["device"] = "cpu"  # on a CPU any dtype resolves to float32: the precision is checked by the test above
        built = build_world(world["world"], **args)
        assert built.index.fingerprint == built.retriever.fingerprint
        assert len(built.index) == 6 and list(built.targets) == ids[:3]

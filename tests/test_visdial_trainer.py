"""The VisDial dialog-encoder trainer (ChatIR's recipe) on a tiny random BLIP.

The released Human_BLIP2 dialogs stand in for VisDial v1.0 train (skipped when the release is absent:
set CHATIR_DATA or keep it in ../shared/data/chatir); the images are generated 32 px noise written
where COCO's would be. A handful of steps: this checks the plumbing, not the recipe's numbers.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("transformers")

from transformers import BertTokenizer  # noqa: E402

from chatir_env.cli import main as cli_main  # noqa: E402
from chatir_env.config import ConfigError  # noqa: E402
from chatir_env.dialog import Dialog  # noqa: E402
from chatir_env.retrievers.blip import BlipDialogRetriever  # noqa: E402
from chatir_env.train.retriever import contrastive_loss, train_retriever  # noqa: E402
from chatir_env.train.train_retriever import main as train_main  # noqa: E402
from chatir_env.train.visdial_retriever import (  # noqa: E402
    HeldoutProbe,
    VisDialDialogSampler,
    build_visdial_training,
    coco2014_image_id,
    query_text,
)

from test_hf_models import noise_images, tiny_blip  # noqa: E402

torch.set_num_threads(1)


def batch_loss(model, rows, dialogs) -> float:
    """The training loss on one fixed batch."""
    with torch.no_grad():
        loss, _ = contrastive_loss(model.dialog_features(dialogs), model.image_features(rows), model.logit_scale)
    return float(loss)

REPO = Path(__file__).resolve().parents[1]
PAIRS = 64
HELDOUT = 16


from conftest import CHATIR_DATA as DATA  # noqa: E402
from conftest import needs_chatir_data as needs_data  # noqa: E402

R_AT_K = {f"{d}_r{k}" for d in ("dialog_to_image", "image_to_dialog") for k in (1, 5, 10)}
PER_ROUND = {f"hits10_round{t}" for t in range(11)}


def word_tokenizer(texts, size=400) -> BertTokenizer:
    """A BERT tokenizer over the most frequent words of ``texts`` (so dialogs are not all [UNK])."""
    counts = collections.Counter(w for t in texts for w in re.findall(r"[a-z]+", t.lower()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", "?", ".", "'"] + [w for w, _ in counts.most_common(size)]
    return BertTokenizer(vocab={t: i for i, t in enumerate(dict.fromkeys(vocab))})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("visdial_train")
    entries = json.loads((DATA / "Human_BLIP2.json").read_text())[:PAIRS]
    train_file = root / "dialogs.json"
    train_file.write_text(json.dumps(entries))  # a stand-in for VisDial train, in the ChatIR format
    images = root / "coco"
    for entry, image in zip(entries, noise_images(PAIRS, seed=7, sizes=((32, 32),))):
        (images / entry["img"]).parent.mkdir(parents=True, exist_ok=True)
        image.save(images / entry["img"])
    tokenizer = word_tokenizer(" ".join(e["dialog"]) for e in entries)
    init = root / "blip_init"
    BlipDialogRetriever(tiny_blip(seed=31, vocab_size=len(tokenizer)), tokenizer, device="cpu").save_pretrained(init)
    config = {
        "world": "visdial",
        "model": {"init": str(init), "device": "cpu", "image_batch_size": 32},
        "data": {"train_file": str(train_file), "format": "chatir", "image_root": str(images), "heldout": HELDOUT,
                 "max_rounds": 10, "caption_mask": 0.2},
        "train": {"steps": 4, "batch_size": 16, "lr": 1e-3, "warmup_steps": 1, "lr_decay": 0.9, "decay_every": 10,
                  "eval_every": 2, "checkpoint_every": 2, "threads": 1, "seed": 0},
    }
    return {"root": root, "config": config, "init": init, "images": images, "entries": entries}


class _FeatureModel:
    """Hand-made features for 12 held-out pairs: image i is the unit vector e_i; dialog i is e_i once it
    holds a turn and -e_i with the caption alone, except dialog 11, which points at image 0 after a turn."""

    def image_features(self, rows):
        return torch.eye(12)[rows]

    def dialog_features(self, dialogs):
        out = []
        for d in dialogs:
            i = int(d.caption)
            out.append(-torch.eye(12)[i] if d.round == 0 else torch.eye(12)[0 if i == 11 else i])
        return torch.stack(out)


def test_heldout_probe_hand_computed():
    dialogs = [Dialog(str(i), (("is it?", "yes"),) * (1 + i % 3)) for i in range(12)]
    metrics = HeldoutProbe(range(12), dialogs, max_rounds=10)(_FeatureModel())
    # Full dialogs: 0-10 score 1 on their own image, 0 elsewhere: rank 0. Dialog 11 scores 1 on image 0 and
    # ties (0) its own image 11 with images 1-10, which come first: rank 11. Image to dialog: image 11 scores 0
    # on every dialog, its own (dialog 11) last of the ties: rank 11; image 0 ties dialogs 0 and 11, dialog 0 first.
    for k in (1, 5, 10):
        assert metrics[f"dialog_to_image_r{k}"] == pytest.approx(100 * 11 / 12)
        assert metrics[f"image_to_dialog_r{k}"] == pytest.approx(100 * 11 / 12)
    # Caption alone: every dialog scores -1 on its own image and 0 on the 11 others: rank 11, no hit.
    assert metrics["hits10_round0"] == 0.0
    assert all(metrics[f"hits10_round{t}"] == pytest.approx(100 * 11 / 12) for t in range(1, 11))


@needs_data
def test_train_resume_and_export(setup, tmp_path):
    config = json.loads(json.dumps(setup["config"]))
    out = tmp_path / "run"
    assert train_main(config, out_dir=str(out), steps=2) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2
    # the checkpoint holds the text side only: the frozen vision side is not trained nor saved
    assert any(k.startswith("text_encoder.") for k in state["model"]) and "logit_scale" in state["model"]
    assert not any("vision" in k for k in state["model"])
    features = out / "image_features.safetensors"
    stamp = features.stat().st_mtime_ns

    assert train_main(config, out_dir=str(out), steps=4) == 0  # resumes at step 2, runs 2 more
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4 and [h["step"] for h in state["history"]] == [2, 4]
    assert features.stat().st_mtime_ns == stamp  # image features computed once, then read from the cache

    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert R_AT_K | PER_ROUND <= set(metrics)
    # the figures themselves are checked on hand-made features in test_heldout_probe_hand_computed
    assert json.loads((out / "metrics.json").read_text())["pairs"] == {"train": PAIRS - HELDOUT, "heldout": HELDOUT}

    # the exported retriever: text side trained, image side exactly the initial one
    before = BlipDialogRetriever.from_pretrained(setup["init"], device="cpu")
    after = BlipDialogRetriever.from_pretrained(out / "retriever", device="cpu")
    assert after.fingerprint != before.fingerprint
    image = [setup["images"] / setup["entries"][0]["img"]]
    assert torch.allclose(after.encode_images(image), before.encode_images(image), rtol=0, atol=1e-6)
    dialogs = [Dialog(setup["entries"][0]["dialog"][0])]
    assert not torch.allclose(after.encode_dialogs(dialogs), before.encode_dialogs(dialogs))


@needs_data
def test_loss_goes_down_on_a_fixed_batch(setup, tmp_path):
    run = build_visdial_training(json.loads(json.dumps(setup["config"])), out_dir=str(tmp_path / "run"), steps=12)
    rows, dialogs = run.sampler(0)
    full = [Dialog(d.caption or "x", d.turns) for d in dialogs]
    run.model.eval()
    start = batch_loss(run.model, rows, full)
    run.cfg.eval_every = 1000
    train_retriever(run.model, lambda step: (rows, full), run.cfg,
                    trainable=lambda m: [p for p in m.parameters() if p.requires_grad])
    assert batch_loss(run.model, rows, full) < start
    # the frozen side did not move: no gradient reached the vision tower
    assert all(not p.requires_grad for p in run.retriever.model.vision_model.parameters())


@needs_data
def test_sampler_lengths_masking_and_distinct_images(setup, tmp_path):
    run = build_visdial_training(json.loads(json.dumps(setup["config"])), out_dir=str(tmp_path / "run"))
    sampler = VisDialDialogSampler(run.sampler.rows.tolist(), run.sampler.dialogs, 16, 10, 0.2, seed=5)
    lengths, masked, with_turns = collections.Counter(), 0, 0
    for step in range(200):
        rows, dialogs = sampler(step)
        assert len(set(rows.tolist())) == 16
        for d in dialogs:
            lengths[d.round] += 1
            with_turns += d.round > 0
            masked += d.caption == ""
    assert set(lengths) == set(range(11))
    assert 0.15 < masked / with_turns < 0.25
    assert torch.equal(sampler(3)[0], sampler(3)[0])  # seeded by step: a resumed run sees the same batches
    assert query_text(Dialog("", (("is it red?", "no"), ("a dog?", "yes")))) == "is it red? no, a dog? yes"
    assert query_text(Dialog("a cat", (("is it red?", "no"),))) == "a cat, is it red? no"


@needs_data
def test_cli_and_config_errors(setup, tmp_path):
    config = json.loads(json.dumps(setup["config"]))
    path = tmp_path / "retriever.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli_main(["train", "retriever", "--config", str(path), "--out-dir", str(tmp_path / "cli"), "--steps", "1"]) == 0
    assert (tmp_path / "cli" / "retriever" / "config.json").is_file()
    bad = json.loads(json.dumps(config))
    bad["model"]["init"] = str(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="model.init"):
        build_visdial_training(bad, out_dir=str(tmp_path / "bad"))
    bad = json.loads(json.dumps(config))
    bad["data"]["train_file"] = str(tmp_path / "visdial_1.0_train.json")
    with pytest.raises(ConfigError, match="train_file"):
        build_visdial_training(bad, out_dir=str(tmp_path / "bad"))


def test_visdial_format_and_coco2014_paths(tmp_path):
    """VisDial v1.0 json (made-up strings) -> pairs with COCO 2014 image paths."""
    from chatir_env.train.visdial_retriever import VisDialDataConfig, load_pairs

    (tmp_path / "val2014").mkdir()
    (tmp_path / "val2014" / "COCO_val2014_000000000042.jpg").write_bytes(b"x")
    data = {"data": {"questions": ["is it red", "how many"], "answers": ["no", "two"],
                     "dialogs": [{"image_id": 7, "caption": "a red box", "dialog": [{"question": 0, "answer": 0}]},
                                 {"image_id": 42, "caption": "two cats", "dialog": [{"question": 1, "answer": 1}]}]}}
    path = tmp_path / "visdial_1.0_train.json"
    path.write_text(json.dumps(data))
    pairs = load_pairs(str(path), VisDialDataConfig(train_file=str(path), image_root=str(tmp_path)))
    assert [p[0] for p in pairs] == ["train2014/COCO_train2014_000000000007.jpg", "val2014/COCO_val2014_000000000042.jpg"]
    assert pairs[0][1].text() == "a red box, is it red? no"
    assert coco2014_image_id(tmp_path)(42) == "val2014/COCO_val2014_000000000042.jpg"

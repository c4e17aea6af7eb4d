"""Faults and bad input that are not covered next to their module's own tests."""

import gymnasium as gym
import pytest
import torch

import chatir_env  # noqa: F401
from chatir_env.core import InvalidQuestionError
from chatir_env.dialog import Dialog
from chatir_env.index import ImageIndex
from chatir_env.train.retriever import RetrieverTrainConfig, train_retriever
from chatir_env.worlds import build_world

from conftest import SMALL


def test_an_index_file_cut_short_is_a_clear_error(tmp_path):
    index = ImageIndex(torch.randn(50, 8), [f"img{i}" for i in range(50)], "model-a")
    path = index.save(tmp_path / "idx")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"idx\.safetensors is corrupt or cut short"):
        ImageIndex.load(tmp_path / "idx")
    (tmp_path / "idx.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"idx\.json is not valid JSON"):
        ImageIndex.load(tmp_path / "idx")


def test_index_save_is_atomic(tmp_path, monkeypatch):
    good = ImageIndex(torch.ones(3, 2), ["a", "b", "c"], "m")
    good.save(tmp_path / "idx")
    import chatir_env.index as index_module

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(index_module, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        ImageIndex(torch.zeros(3, 2), ["a", "b", "c"], "m").save(tmp_path / "idx")
    assert torch.equal(ImageIndex.load(tmp_path / "idx").embeddings, torch.ones(3, 2))  # the old one survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx.json", "idx.safetensors"]  # no temp files left


def test_huge_and_control_character_questions():
    env = gym.make("ChatIR/ShapesOracle-v0", **SMALL)
    env.reset(seed=0)
    with pytest.raises(InvalidQuestionError, match="100000 characters"):
        env.step("is it red? " * 9_090 + "abcdefghij")
    with pytest.raises(InvalidQuestionError, match="U\\+0000"):
        env.step("is it\x00 red?")
    with pytest.raises(InvalidQuestionError, match="must be a str, got bytes"):
        env.step(b"is it red?")


class NaNRetriever:
    """A broken model: NaN dialog embeddings."""

    def __init__(self, inner):
        self.inner, self.fingerprint, self.dim, self.device = inner, inner.fingerprint, inner.dim, inner.device

    def encode_images(self, items):
        return self.inner.encode_images(items)

    def encode_dialogs(self, dialogs):
        out = self.inner.encode_dialogs(dialogs)
        out[:, 0] = float("nan")
        return out


def test_nan_embeddings_from_a_model_are_a_clear_error():
    import dataclasses

    world = build_world("shapes_oracle", **SMALL)
    broken = dataclasses.replace(world, retriever=NaNRetriever(world.retriever))
    env = gym.make("ChatIR/ShapesOracle-v0", world=broken)
    with pytest.raises(ValueError, match="NaN or inf; the model produced invalid embeddings"):
        env.reset(seed=0)


class RaisingQuestioner:
    def reset(self, captions, pools=None):
        pass

    def ask(self, observations):
        raise RuntimeError("my policy crashed")


def test_a_questioner_that_raises_mid_benchmark_keeps_the_other_results(tmp_path, monkeypatch):
    import json
    import sys
    import types

    from chatir_env.eval.benchmark import run_benchmark

    module = types.ModuleType("raising_questioner_mod")
    module.RaisingQuestioner = RaisingQuestioner
    monkeypatch.setitem(sys.modules, "raising_questioner_mod", module)
    config = {
        "max_rounds": 3, "num_targets": 20, "out_dir": str(tmp_path),
        "worlds": [{"name": "exact", "world": "shapes_oracle", "args": SMALL}],
        "questioners": [{"name": "ok", "questioner": "caption_only"},
                        {"name": "crash", "questioner": "raising_questioner_mod:RaisingQuestioner"},
                        {"name": "after", "questioner": "random"}],
    }
    assert run_benchmark(config, bootstrap=10, progress=False) == 1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["results"]) == {"exact/ok", "exact/after"}
    assert "my policy crashed" in saved["config"]["failures"]["exact/crash"]


class TinyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.image = torch.nn.Linear(4, 8)
        self.text = torch.nn.Embedding(50, 8)
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.0))

    def image_features(self, x):
        return torch.nn.functional.normalize(self.image(x), dim=-1)

    def dialog_features(self, dialogs):
        ids = torch.tensor([[hash(w) % 50 for w in d.text().split()][:4] + [0] * (4 - len(d.text().split()[:4]))
                            for d in dialogs])
        return torch.nn.functional.normalize(self.text(ids).mean(1), dim=-1)


def _sample(step):
    g = torch.Generator().manual_seed(step)
    images = torch.randn(6, 4, generator=g)
    return images, [Dialog(f"w{step} w{i} x{int(images[i, 0] > 0)}") for i in range(6)]


def test_training_interrupted_then_resumed_equals_an_uninterrupted_run(tmp_path):
    """Ctrl-C during training: the checkpoint holds every finished step; the resumed run ends where
    an uninterrupted one does, with the same weights (nothing lost, nothing repeated)."""
    reference = TinyModel()
    train_retriever(reference, _sample, RetrieverTrainConfig(steps=12, batch_size=6, lr=0.01, checkpoint_every=100,
                                                             out_dir=str(tmp_path / "ref"), warmup_steps=1))

    def interrupting(step):
        if step == 7:
            raise KeyboardInterrupt
        return _sample(step)

    cfg = RetrieverTrainConfig(steps=12, batch_size=6, lr=0.01, checkpoint_every=100, out_dir=str(tmp_path / "run"),
                               warmup_steps=1)
    with pytest.raises(KeyboardInterrupt):
        train_retriever(TinyModel(), interrupting, cfg)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 7
    resumed = TinyModel()
    train_retriever(resumed, _sample, cfg)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name

"""The LM recipe on VisDial train stand-ins: SFT rows from the human questions, and `chatir train grpo`
with live (tiny random) BLIP2 answers in ChatIR/VisDialTrain-v0, written through to the answer store."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

from chatir_env.answer_store import AnswerStore, read_fingerprint  # noqa: E402
from chatir_env.cli import main as cli_main  # noqa: E402
from chatir_env.worlds import build_world  # noqa: E402

# `setup` is the stand-ins fixture; pytest passes it to the tests below by name, which pyflakes reads as shadowing (F811).
from test_visdial_train import FINGERPRINT, image_number, setup  # noqa: E402,F401


def test_sft_rows_are_the_train_splits_human_turns(setup):  # noqa: F811
    from chatir_env.train.visdial_sft import visdial_sft_examples

    rows = visdial_sft_examples(setup["kwargs"], system_prompt="find the image")
    train = build_world("visdial_train_replay", **setup["kwargs"], answer_sources=["human"])
    assert len(rows) == 10 * len(train.targets) == 200  # every turn of the 20 train-split dialogs, none of the 4 held out
    first = train.targets[0]
    asked = setup["asked"][image_number(first)]
    assert rows[0] == {"prompt": [{"role": "system", "content": "find the image"},
                                  {"role": "user", "content": train.captions[first]}],
                       "completion": [{"role": "assistant", "content": asked[0][0]}]}
    # turn 3 of the first dialog: the caption, then three human questions with their human answers
    prompt = rows[3]["prompt"]
    assert [m["content"] for m in prompt[2:]] == [text for q, a in asked[:3] for text in (q, a)]
    assert rows[3]["completion"][0]["content"] == asked[3][0]
    sampled = visdial_sft_examples(setup["kwargs"], num_examples=7, seed=1)
    assert len(sampled) == 7 and all(r["prompt"][0]["role"] == "user" for r in sampled)
    # each dialog's last eight questions are its own: none of the held-out slice's may be trained on
    val = build_world("visdial_train_replay", **setup["kwargs"], split="val", answer_sources=["human"])
    held_out = {q for t in val.targets for q, _ in setup["asked"][image_number(t)][2:]}
    assert len(held_out) == 4 * 8 and not held_out & {r["completion"][0]["content"] for r in rows + sampled}


def test_grpo_plays_visdial_train_with_live_blip2(setup, tmp_path):  # noqa: F811
    import yaml

    from chatir_env.answerers.blip2 import Blip2Answerer
    from chatir_env.testing import tiny_blip2

    model, processor = tiny_blip2("t5", seed=4)
    blip2 = Blip2Answerer(model, processor, lambda _: None, device="cpu")
    blip2.save_pretrained(tmp_path / "blip2")
    # a BLIP2 answerer that has a fingerprint keys the store by it; otherwise the test names one
    named = {} if getattr(blip2, "fingerprint", None) else {"store_fingerprint": FINGERPRINT}
    store = tmp_path / "answers.sqlite"
    config = {
        "stage": "grpo", "threads": 1, "out_dir": str(tmp_path / "run"),
        "model": {"build": "shapes_tiny", "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                                     "num_attention_heads": 2, "seed": 0}},
        "env": {"world": "visdial_train",
                "world_kwargs": {**setup["kwargs"], "image_root": str(setup["coco"]), "blip2_model": str(tmp_path / "blip2"),
                                 "answer_store": str(store), "global_pool": 2, **named},
                "max_rounds": 2, "max_question_tokens": 8, "require_question_mark": False},
        "grpo": {"per_device_train_batch_size": 4, "num_generations": 2, "logging_steps": 1, "save_steps": 1,
                 "report_to": []},
        "eval": {"world": "visdial_train_replay",
                 "world_kwargs": {**setup["kwargs"], "split": "val", "answer_sources": ["human", "dont_know"]},
                 "num_targets": 4, "max_rounds": 2, "bootstrap_samples": 20},
    }
    path = tmp_path / "grpo_test.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli_main(["train", "grpo", "--config", str(path), "--steps", "1"]) == 0
    assert (tmp_path / "run" / "final" / "chatir_questioner.json").exists()
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 1 and len(results["results"]["GRPO"]["hits@10"]) == 3
    # the LM's questions were answered by BLIP2 and kept in the store
    kept = AnswerStore(store, read_fingerprint(store), readonly=True)
    log = json.loads((tmp_path / "run" / "log_history.json").read_text())
    assert log and len(kept) > 0


def test_sft_stage_trains_on_visdial_train_rows(setup, tmp_path):  # noqa: F811
    """``data.source: visdial_train``: the SFT warm start reads the human questions of the train split."""
    import yaml

    config = {
        "stage": "sft", "threads": 1, "out_dir": str(tmp_path / "sft"),
        "model": {"build": "shapes_tiny", "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                                     "num_attention_heads": 2, "seed": 0}},
        "data": {"source": "visdial_train", "world_kwargs": setup["kwargs"], "num_examples": None, "max_rounds": 3},
        "env": {"system_prompt": "find the image"},
        "sft": {"per_device_train_batch_size": 8, "save_strategy": "no", "report_to": []},
        "eval": {"enabled": False},
    }
    path = tmp_path / "sft_visdial.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli_main(["train", "grpo", "--config", str(path), "--steps", "1"]) == 0
    meta = json.loads((tmp_path / "sft" / "final" / "chatir_questioner.json").read_text())
    # every one of the first 3 turns of the 20 train-split dialogs (the 4 held-out dialogs are not rows)
    assert meta["rows"] == 20 * 3 and meta["data"]["source"] == "visdial_train"
    assert meta["system_prompt"] == "find the image"
    assert meta["command"] == f"chatir train grpo --config {path} --steps 1"
    # a Shapes-only field under the VisDial source is refused before anything is built
    path.write_text(yaml.safe_dump({**config, "data": {**config["data"], "sampling": "uniform"}}))
    assert cli_main(["train", "grpo", "--config", str(path), "--steps", "1"]) == 2


def test_the_grpo_recipe_names_only_fields_its_code_takes():
    import inspect

    from chatir_env.config import load_config, validate
    from chatir_env.train.grpo import GRPOStageConfig, SFTStageConfig
    from chatir_env.worlds.visdial import build_visdial_world
    from chatir_env.worlds.visdial_train import build_visdial_train_replay_world, build_visdial_train_world

    config = validate(GRPOStageConfig, load_config("grpo_visdial_train"))
    assert config.env.world == "visdial_train" and config.eval.world == "visdial"
    inspect.signature(build_visdial_train_world).bind(**config.env.world_kwargs)
    inspect.signature(build_visdial_world).bind(**config.eval.world_kwargs)
    # the warm start is SFT on VisDial train's human questions, with the system prompt GRPO uses
    sft = validate(SFTStageConfig, load_config(config.model.warm_start))
    assert sft.data.source == "visdial_train" and sft.out_dir + "/final" == config.model.path
    assert sft.env.system_prompt == config.env.system_prompt and sft.env.max_question_tokens == config.env.max_question_tokens
    inspect.signature(build_visdial_train_replay_world).bind(**sft.data.world_kwargs)
    assert sft.data.world_kwargs["train_file"] == config.env.world_kwargs["train_file"]

"""ChatIR/VisDial-v0 and ChatIR/VisDialReplay-v0 on tiny random models (no weights, no COCO images).

The ChatIR release files are real (skipped when absent: set CHATIR_DATA or keep them in
../shared/data/chatir); the retriever is a tiny random BLIP saved to a temp dir, the corpus 200 ids
of the 50K search space (the first 40 protocol targets and 160 others) with generated 32 px images
in their places, indexed with `chatir index` as a user would; the answerer of VisDial-v0 is a tiny
random BLIP2. Nothing here measures retrieval quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from chatir_env.answerers.blip2 import Blip2Answerer  # noqa: E402
from chatir_env.answerers.replay import ReplayAnswerer  # noqa: E402
from chatir_env.cli import main as cli_main  # noqa: E402
from chatir_env.data.chatir_files import SEARCH_SPACE_FILE, load_dialog_file, question_key, split_turn  # noqa: E402
from chatir_env.dialog import Dialog  # noqa: E402
from chatir_env.pooled import PooledChatIREnv  # noqa: E402
from chatir_env.retrievers.blip import BlipDialogRetriever  # noqa: E402
from chatir_env.target_sample import sample_targets  # noqa: E402
from chatir_env.worlds import build_world  # noqa: E402
from chatir_env.worlds.visdial import VisDialSetupError, pool_question  # noqa: E402

from test_hf_models import bert_tokenizer, noise_images, tiny_blip, tiny_blip2  # noqa: E402

torch.set_num_threads(1)  # test_hf_models sets 2; this box is shared

REPO = Path(__file__).resolve().parents[1]
NUM_TARGETS = 40
OTHERS = 160


from conftest import CHATIR_DATA as DATA  # noqa: E402
from conftest import needs_chatir_data as pytestmark  # noqa: E402, F401  (pytest reads the module-level name)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("visdial")
    human = json.loads((DATA / "Human_BLIP2.json").read_text())
    search_space = json.loads((DATA / SEARCH_SPACE_FILE).read_text())
    # the worlds' num_targets: a seeded random sample of the protocol's targets, kept in protocol order
    targets = sample_targets([e["img"] for e in human], NUM_TARGETS)
    chosen = set(targets)
    human = [e for e in human if e["img"] in chosen]
    others = [i for i in search_space if i not in chosen][:OTHERS]
    ids = [i for i in search_space if i in chosen or i in set(others)]  # protocol order
    coco = root / "coco"
    for k, (image_id, image) in enumerate(zip(ids, noise_images(len(ids), seed=5, sizes=((32, 32), (40, 30))))):
        (coco / image_id).parent.mkdir(parents=True, exist_ok=True)
        image.save(coco / image_id)
    subset = root / "search_space_subset.json"
    subset.write_text(json.dumps(ids))

    blip_dir = root / "blip"
    BlipDialogRetriever(tiny_blip(seed=21), bert_tokenizer(), device="cpu").save_pretrained(blip_dir)
    index = root / "index" / "blip_subset"
    rc = cli_main(["index", "--retriever", "blip", "--model", str(blip_dir), "--device", "cpu", "--corpus", str(coco),
                   "--search-space", str(subset), "--out", str(index), "--no-progress", "--batch-size", "64"])
    assert rc == 0
    # A second index that lacks one target, for the missing-target errors.
    partial = root / "index" / "partial"
    (root / "partial.json").write_text(json.dumps([i for i in ids if i != targets[3]]))
    assert cli_main(["index", "--retriever", "blip", "--model", str(blip_dir), "--device", "cpu", "--corpus", str(coco),
                     "--search-space", str(root / "partial.json"), "--out", str(partial), "--no-progress"]) == 0
    kwargs = {"data_dir": str(DATA), "index": str(index), "retriever_model": str(blip_dir), "device": "cpu",
              "num_targets": NUM_TARGETS}
    return {"root": root, "coco": coco, "blip": blip_dir, "index": index, "partial": partial, "targets": targets,
            "human": human, "ids": ids, "kwargs": kwargs}


# --- the replay world ------------------------------------------------------------------------------


def test_replay_world_targets_pools_and_captions(setup):
    world = build_world("visdial_replay", **setup["kwargs"])
    assert list(world.targets) == setup["targets"]
    assert len(world.index) == NUM_TARGETS + OTHERS
    assert isinstance(world.answerer, ReplayAnswerer)
    for entry in setup["human"]:
        target = entry["img"]
        assert world.captions[target] == entry["dialog"][0]
        pool = world.question_pool(target)
        assert 26 <= len(pool) <= 40 and len(set(pool)) == len(pool)
        assert all(q == q.strip() and "\n" not in q for q in pool)
    assert world.config["max_pool"] == 40 >= max(len(world.question_pool(t)) for t in world.targets)


def test_replay_env_replays_the_human_dialogs_exactly(setup):
    env = gym.make("ChatIR/VisDialReplay-v0", **setup["kwargs"])
    world = env.unwrapped.world
    for entry in setup["human"]:
        target, official = entry["img"], entry["dialog"]
        obs, info = env.reset(options={"target": target})
        assert info["target"] == target and obs["round"] == 0
        core = env.unwrapped.core
        assert core.dialogs[0].text() == official[0]
        # the pool holds each question once (case and spacing folded), as its first recorder wrote it
        pool_keys = {question_key(q) for q in world.question_pool(target)}
        for t in range(1, len(official)):
            question = pool_question(split_turn(official[t]).question)
            assert question_key(question) in pool_keys
            obs, reward, terminated, truncated, info = env.step(question)
            # the dialog the retriever ranked is the official eval's query string, character for character
            assert core.dialogs[0].text() == ", ".join(official[: t + 1])
            assert np.isfinite(reward) and 0 <= info["rank"] < NUM_TARGETS + OTHERS
            assert terminated == (t == 10) and not truncated
    env.close()


def test_replay_env_passes_gymnasium_and_sb3_checkers(setup):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("ChatIR/VisDialReplay-v0", **setup["kwargs"])
    check_env(env.unwrapped, skip_render_check=True)
    max_pool = env.unwrapped.world.config["max_pool"]
    assert max_pool == 40
    # SB3's checker steps random actions and knows nothing of masks: every slot must be a question
    padded = gym.make("ChatIR/VisDialReplay-v0", **setup["kwargs"], pool_padding="repeat")
    pooled = PooledChatIREnv(padded, max_pool=max_pool, top_k=20)
    sb3_check_env(pooled)
    obs, info = pooled.reset(seed=1)
    pool = pooled.unwrapped.world.question_pool(info["target"])
    assert len(pool) == max_pool and pooled.action_masks().all()


def test_pooled_replay_masks_hide_padded_slots(setup):
    pooled = PooledChatIREnv(gym.make("ChatIR/VisDialReplay-v0", **setup["kwargs"]), max_pool=40, top_k=20)
    world = pooled.unwrapped.world
    target = min(world.targets, key=lambda t: len(world.question_pool(t)))
    pool = world.question_pool(target)
    assert len(pool) < 40
    obs, info = pooled.reset(options={"target": target})
    assert set(obs) == {"dialog", "round", "asked", "gain", "candidates"} and obs["dialog"].shape == (16,)
    masks = pooled.action_masks()
    assert masks.shape == (40,) and masks[: len(pool)].all() and not masks[len(pool):].any()
    obs, reward, terminated, truncated, info = pooled.step(0)
    assert not pooled.action_masks()[0] and obs["asked"][0] == 1.0
    assert info["answer"] == world.answerer.answer([target], [Dialog(world.captions[target])], [pool[0]])[0]
    pooled.step(39)  # a padded slot (an agent ignoring masks) wraps around to a pool question
    assert pooled.unwrapped.core.dialogs[0].questions[-1] == pool[39 % len(pool)]


def test_replay_answerer_rebuilds_every_human_dialog(setup):
    """All 2,064 Human dialogs, including the few that ask one question twice with two answers and
    those whose questions other questioners also asked (with other answers)."""
    world = build_world("visdial_replay", **setup["kwargs"])
    answerer = world.answerer
    for target, recorded in load_dialog_file(DATA / "Human_BLIP2.json"):
        dialog = Dialog(recorded.caption)
        for question, _ in recorded.turns:
            question = pool_question(question)
            dialog = dialog.with_turn(question, answerer.answer([target], [dialog], [question])[0])
        assert dialog.text() == recorded.text(), target
    assert answerer.unknown_count == 0
    target = setup["targets"][0]
    assert answerer.answer([target], [None], ["a question nobody recorded?"]) == ["i don't know"]
    assert answerer.unknown_count == 1


# --- errors that say what to fetch -----------------------------------------------------------------


def test_missing_pieces_are_clear_errors(setup, tmp_path):
    kw = setup["kwargs"]
    with pytest.raises(VisDialSetupError, match="chatir download"):
        build_world("visdial_replay", **{**kw, "data_dir": str(tmp_path)})
    with pytest.raises(VisDialSetupError, match="chatir index"):
        build_world("visdial_replay", **{**kw, "index": str(tmp_path / "nothing")})
    with pytest.raises(VisDialSetupError, match="chatir index"):
        build_world("visdial_replay", **{**kw, "index": None})
    with pytest.raises(VisDialSetupError, match="chatir_weights.ckpt"):
        build_world("visdial_replay", **{**kw, "retriever_model": str(tmp_path / "no_such.ckpt")})
    with pytest.raises(VisDialSetupError, match="not in the index"):
        build_world("visdial_replay", **{**kw, "index": str(setup["partial"])})
    skipped = build_world("visdial_replay", **{**kw, "index": str(setup["partial"]), "missing_targets": "skip"})
    assert setup["targets"][3] not in skipped.targets and len(skipped.targets) == NUM_TARGETS
    with pytest.raises(VisDialSetupError, match="blip2"):
        build_world("visdial", **kw, image_root=str(setup["coco"]))
    with pytest.raises(VisDialSetupError, match="unlabeled2017"):
        build_world("visdial", **kw, blip2_model=str(tmp_path))
    with pytest.raises(VisDialSetupError, match="unlabeled2017"):
        build_world("visdial", **kw, blip2_model=str(tmp_path), image_root=str(tmp_path))


def test_any_retriever_spec_with_a_matching_index(setup):
    """An import path and a ready object work too; a mismatched index is refused."""
    from chatir_env.index import IndexMismatchError

    kw = {k: v for k, v in setup["kwargs"].items() if k != "retriever_model"}
    world = build_world("visdial_replay", **kw, retriever="chatir_env.retrievers.blip:BlipDialogRetriever",
                        retriever_model=str(setup["blip"]))
    assert world.retriever.fingerprint == world.index.fingerprint
    other = BlipDialogRetriever(tiny_blip(seed=22), bert_tokenizer(), device="cpu")
    with pytest.raises(IndexMismatchError, match="chatir index"):
        build_world("visdial_replay", **kw, retriever=other)


# --- the free-text world with a tiny BLIP2 ---------------------------------------------------------


def test_visdial_env_steps_with_a_tiny_blip2(setup):
    model, processor = tiny_blip2("t5", seed=23)
    blip2_dir = setup["root"] / "blip2"
    Blip2Answerer(model, processor, lambda _: None, device="cpu").save_pretrained(blip2_dir)
    env = gym.make("ChatIR/VisDial-v0", **setup["kwargs"], blip2_model=str(blip2_dir), image_root=str(setup["coco"]))
    world = env.unwrapped.world
    assert world.question_pool is None and isinstance(world.answerer, Blip2Answerer)
    obs, info = env.reset(seed=0)
    assert info["target"] in setup["targets"] and obs["caption"]
    obs, reward, terminated, truncated, info = env.step("is it sunny?")
    assert obs["round"] == 1 and obs["questions"][0] == "is it sunny?"
    assert isinstance(info["answer"], str) and obs["answers"][0] == info["answer"]
    assert 0 <= info["rank"] < NUM_TARGETS + OTHERS and np.isfinite(reward) and not terminated
    assert world.image(info["target"]).size == (32, 32) or world.image(info["target"]).size == (40, 30)
    env.close()


# --- the benchmark configs -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["visdial_blip", "visdial_clip", "visdial_replay"])
def test_benchmark_configs_have_the_shape_benchmark_reads(name):
    import inspect

    from chatir_env.agents import QUESTIONERS
    from chatir_env.config import load_config
    from chatir_env.worlds.base import _BUILDERS

    config = load_config(name)
    assert {"name", "max_rounds", "num_targets", "worlds", "questioners", "out_dir"} <= set(config)
    assert config["max_rounds"] == 10 and config["num_targets"] == 2064
    labels = set()
    for w in config["worlds"]:
        assert w["world"] in ("visdial", "visdial_replay")
        accepted = inspect.signature(_BUILDERS[w["world"]]).parameters
        assert set(w["args"]) <= set(accepted), set(w["args"]) - set(accepted)
        labels.add(w["name"])
    for q in config["questioners"]:
        assert q["questioner"] in QUESTIONERS
        assert set(q.get("worlds", labels)) <= labels


def test_replay_benchmark_rows_match_eval_dialogs(setup, tmp_path):
    """configs/visdial_replay.yaml on the tiny setup: the replayed Human row ranks every target as
    `chatir eval-dialogs` ranks the released Human dialogs."""
    from chatir_env.config import load_config
    from chatir_env.eval.benchmark import run_benchmark
    from chatir_env.eval.eval_dialogs import evaluate_dialog_file
    from chatir_env.index import ImageIndex

    config = load_config("visdial_replay")
    config["num_targets"] = 6
    config["out_dir"] = str(tmp_path / "bench")
    config["worlds"][0]["args"].update(data_dir=str(DATA), index=str(setup["index"]), retriever_model=str(setup["blip"]),
                                       device="cpu", num_targets=NUM_TARGETS)
    for q in config["questioners"]:
        if q["questioner"] == "replay":
            q["args"]["data_dir"] = str(DATA)
    assert run_benchmark(config, bootstrap=10, progress=False) == 0
    saved = json.loads((tmp_path / "bench" / "results.json").read_text())
    results = saved["results"]
    assert {"replay/caption-only", "replay/random-pool", "replay/human", "replay/chatgpt"} <= set(results)
    played = saved["config"]["target_samples"]["replay"]["ids"]  # 6 of the world's targets, drawn at random
    assert played == sample_targets(setup["targets"], 6)

    retriever = BlipDialogRetriever.from_pretrained(setup["blip"], device="cpu")
    index = ImageIndex.load(setup["index"], fingerprint=retriever.fingerprint)
    ranks = evaluate_dialog_file(retriever, index, [r for r in load_dialog_file(DATA / "Human_BLIP2.json") if r[0] in played])
    assert results["replay/human"]["mean_rank"] == pytest.approx(ranks.float().mean(dim=1).tolist())
    assert results["replay/caption-only"]["mean_rank"] == pytest.approx([ranks[0].float().mean().item()] * 11)

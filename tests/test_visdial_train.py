"""ChatIR/VisDialTrain-v0 and ChatIR/VisDialTrainReplay-v0 on stand-ins the tests make.

A 24-dialog train file in VisDial v1.0's original format over generated COCO 2014 images (20 in
train2014/, 4 only in val2014/), a tiny random BLIP retriever saved as an HF directory, a tiny random
BLIP2 answerer, indexes built with `chatir index` as a user would (the training images with
--visdial-train, a stand-in benchmark search space with --search-space), and an answer store.
Nothing here measures retrieval quality.

The dialogs are built so that the pools can be worked out by hand: every dialog asks "is it sunny?"
first; every dialog except those of images 1 and 2 asks "how many people?" second; the other eight
(or nine) questions of each dialog are drawn from 256 questions that no two dialogs share. So the two most
frequent training questions are "is it sunny?" and "how many people?" whatever the validation slice.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("transformers")

import chatir_env  # noqa: E402,F401
from chatir_env.answer_store import AnswerStore  # noqa: E402
from chatir_env.cli import main as cli_main  # noqa: E402
from chatir_env.dialog import Dialog  # noqa: E402
from chatir_env.index import ImageIndex, MissingContentHashesError  # noqa: E402
from chatir_env.retrievers.blip import BlipDialogRetriever  # noqa: E402
from chatir_env.testing import WORDS, bert_tokenizer, noise_images, tiny_blip, tiny_blip2  # noqa: E402
from chatir_env.worlds import build_world  # noqa: E402
from chatir_env.worlds.visdial import VisDialSetupError  # noqa: E402
from chatir_env.worlds.visdial_train import SourcedAnswerer, TrainingLeakageError, UnansweredQuestionError  # noqa: E402

IMAGE_IDS = list(range(1, 25))  # VisDial image_id; 21-24 exist only in val2014/
VAL_ONLY = {21, 22, 23, 24}
NOUNS = ["cat", "dog", "man", "woman", "table", "car", "bus", "people"]
PLACES = ["street", "table", "image", "photo", "car", "bus", "people", "man"]
COLORS = ["red", "blue", "green", "white"]
FINGERPRINT = "tiny-blip2 test answers"


def coco_name(image_id: int) -> str:
    if image_id in VAL_ONLY:
        return f"val2014/COCO_val2014_{image_id:012d}.jpg"
    return f"train2014/COCO_train2014_{image_id:012d}.jpg"


def image_number(corpus_id: str) -> int:
    return int(corpus_id[-16:-4])


def _visdial_file(path: Path) -> dict[int, list[tuple[str, str]]]:
    """A VisDial v1.0 train file (questions without "?", as VisDial stores them); returns what it asks."""
    unique = [f"is the {c} {n} in the {p}" for c in COLORS for n in NOUNS for p in PLACES]  # 256
    questions = ["is it sunny", "how many people", *unique]
    answers = ["yes", "no", "two", "yes, it is", "i think so", "one"]
    dialogs, asked = [], {}
    rng = np.random.default_rng(0)
    for k, image_id in enumerate(IMAGE_IDS):
        chosen = [0] + ([] if image_id in (1, 2) else [1])
        chosen += [2 + 9 * k + j for j in range(10 - len(chosen))]  # no two dialogs share these
        rounds = []
        for q in chosen:
            a = int(rng.integers(len(answers)))
            rounds.append({"question": q, "answer": a, "answer_options": list(range(6)), "gt_index": a})
        caption = f"a {NOUNS[k % 8]} and a {NOUNS[(k + 3) % 8]} in the {PLACES[k % 6]}"
        dialogs.append({"image_id": image_id, "caption": caption, "dialog": rounds})
        asked[image_id] = [(questions[r["question"]] + "?", answers[r["answer"]]) for r in rounds]
    path.write_text(json.dumps({"version": "1.0", "split": "train",
                                "data": {"questions": questions, "answers": answers, "dialogs": dialogs}}))
    return asked


def _index(blip_dir, corpus, out, *extra) -> None:
    assert cli_main(["index", "--retriever", "blip", "--model", str(blip_dir), "--device", "cpu", "--corpus", str(corpus),
                     "--out", str(out), "--no-progress", "--batch-size", "16", *extra]) == 0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("visdial_train")
    coco = root / "coco"
    images = noise_images(len(IMAGE_IDS), seed=41, sizes=((32, 32), (40, 30)))
    for image_id, image in zip(IMAGE_IDS, images):
        (coco / coco_name(image_id)).parent.mkdir(parents=True, exist_ok=True)
        image.save(coco / coco_name(image_id))
    train_file = root / "visdial_1.0_train.json"
    asked = _visdial_file(train_file)

    blip_dir = root / "blip"
    BlipDialogRetriever(tiny_blip(seed=23), bert_tokenizer(), device="cpu").save_pretrained(blip_dir)
    _index(blip_dir, coco, root / "index" / "train", "--visdial-train", str(train_file))

    # the benchmark's search space: other images, and a copy of a training image for the leakage guard
    bench = root / "bench"
    search_space = [f"unlabeled2017/{i:012d}.jpg" for i in range(900, 906)]
    for name, image in zip(search_space, noise_images(len(search_space), seed=42)):
        (bench / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(bench / name)
    (root / "search_space.json").write_text(json.dumps(search_space))
    _index(blip_dir, bench, root / "index" / "bench", "--search-space", str(root / "search_space.json"))
    leaky = root / "bench_leaky"
    shutil.copytree(bench, leaky)
    shutil.copy(coco / coco_name(7), leaky / "unlabeled2017" / "000000000777.jpg")  # same bytes, another name
    (root / "leaky.json").write_text(json.dumps([*search_space, "unlabeled2017/000000000777.jpg"]))
    _index(blip_dir, leaky, root / "index" / "bench_leaky", "--search-space", str(root / "leaky.json"))

    kwargs = {"train_file": str(train_file), "index": str(root / "index" / "train"), "retriever_model": str(blip_dir),
              "device": "cpu", "benchmark_index": str(root / "index" / "bench"), "val_size": 4}
    return {"root": root, "coco": coco, "bench": bench, "blip": blip_dir, "train_file": train_file, "asked": asked,
            "search_space": search_space, "kwargs": kwargs}


def _store(path, rows=()) -> AnswerStore:
    store = AnswerStore(path, FINGERPRINT)
    store.put_many(list(rows))
    return store


# --- the index and the world's targets -------------------------------------------------------------


def test_chatir_index_records_content_hashes_of_the_training_images(setup):
    import hashlib

    index = ImageIndex.load(setup["root"] / "index" / "train")
    assert sorted(index.ids) == sorted(coco_name(i) for i in IMAGE_IDS)  # val2014-only images found there
    hashes = index.content_hashes()
    for image_id in (coco_name(1), coco_name(22)):
        assert hashes[image_id] == hashlib.sha256((setup["coco"] / image_id).read_bytes()).hexdigest()


def test_splits_are_disjoint_seeded_and_cover_the_dialogs(setup):
    kw = setup["kwargs"]
    train = build_world("visdial_train_replay", **kw, answer_sources=["human", "dont_know"])
    val = build_world("visdial_train_replay", **kw, split="val", answer_sources=["human", "dont_know"])
    assert len(val.targets) == 4 and len(train.targets) == 20
    assert set(train.targets) | set(val.targets) == {coco_name(i) for i in IMAGE_IDS}
    assert not set(train.targets) & set(val.targets)
    again = build_world("visdial_train_replay", **kw, split="val", answer_sources=["human", "dont_know"])
    other = build_world("visdial_train_replay", **kw, split="val", split_seed=1, answer_sources=["human", "dont_know"])
    assert again.targets == val.targets and set(other.targets) != set(val.targets)
    assert len(train.index) == len(IMAGE_IDS)  # both rank the whole training corpus
    # captions are VisDial's; the train targets keep file order
    k = IMAGE_IDS.index(3)
    caption = f"a {NOUNS[k % 8]} and a {NOUNS[(k + 3) % 8]} in the {PLACES[k % 6]}"
    assert {**train.captions, **val.captions}[coco_name(3)] == caption
    assert train.targets == sorted(train.targets, key=image_number)


def test_pools_are_own_questions_then_the_most_frequent(setup):
    kw = setup["kwargs"]
    world = build_world("visdial_train_replay", **kw, answer_sources=["human", "dont_know"], global_pool=2)
    own = lambda image_id: [q for q, _ in setup["asked"][image_id]]  # noqa: E731
    # image 1 never asks "how many people?": it is added after its own ten
    assert world.question_pool(coco_name(1)) == own(1) + ["how many people?"]
    # image 3 asks both frequent questions already: its pool is its own ten
    assert world.question_pool(coco_name(3)) == own(3) and len(own(3)) == 10
    assert world.config["max_pool"] == 12  # ten own questions plus the two shared ones
    plain = build_world("visdial_train_replay", **kw, answer_sources=["human", "dont_know"])
    assert plain.question_pool(coco_name(1)) == own(1) and plain.config["max_pool"] == 10
    with pytest.raises(ValueError, match="max_pool=8"):
        build_world("visdial_train_replay", **kw, answer_sources=["human"], max_pool=8)


# --- answers ---------------------------------------------------------------------------------------


def test_answer_sources_are_tried_in_the_configured_order(setup, tmp_path):
    kw = setup["kwargs"]
    target = coco_name(1)
    (own_q, human_a), (second_q, second_a) = setup["asked"][1][0], setup["asked"][1][1]
    _store(tmp_path / "answers.sqlite", [(target, own_q, "stored answer"), (target, "how many people?", "three")])
    store_kw = {"answer_store": str(tmp_path / "answers.sqlite"), "global_pool": 2}  # read-only: its own fingerprint
    world = build_world("visdial_train_replay", **kw, **store_kw)  # default: store, human, dont_know
    assert world.config["answer_sources"] == ["store", "human", "dont_know"]
    start = [Dialog(world.captions[target])] * 4
    questions = [own_q, second_q, "how many people?", "is the bus red?"]
    assert world.answerer.answer([target] * 4, start, questions) == ["stored answer", second_a, "three", "i don't know"]
    assert dict(world.answerer.answered_by) == {"store": 2, "human": 1, "dont_know": 1}
    human_first = build_world("visdial_train_replay", **kw, **store_kw, answer_sources=["human", "store"])
    assert human_first.answerer.answer([target] * 3, start[:3], questions[:3]) == [human_a, second_a, "three"]
    with pytest.raises(ValueError, match="another answerer"):  # a store is read under the answerer that wrote it
        build_world("visdial_train_replay", **kw, **store_kw, store_fingerprint="another answerer")
    with pytest.raises(UnansweredQuestionError, match="'is the bus red\\?' about 'train2014/COCO_train2014_000000000001.jpg'"):
        human_first.answerer.answer([target], start[:1], ["is the bus red?"])


def test_human_answers_follow_the_dialog(setup):
    """The n-th asking of a recorded question gets the n-th recorded answer; other targets' questions get none."""
    world = build_world("visdial_train_replay", **setup["kwargs"], answer_sources=["human", "dont_know"])
    env = gym.make("ChatIR/VisDialTrainReplay-v0", **setup["kwargs"], answer_sources=["human", "dont_know"])
    target = env.unwrapped.world.targets[0]
    image_id = image_number(target)
    obs, info = env.reset(options={"target": target})
    for question, answer in setup["asked"][image_id]:
        obs, reward, terminated, truncated, info = env.step(question)
        assert info["answer"] == answer and np.isfinite(reward)
    assert terminated
    foreign = setup["asked"][image_id + 1][5][0]  # a question only the next image's dialog asks
    assert world.answerer.answer([target], [Dialog("")], [foreign]) == ["i don't know"]
    # a question a dialog asked twice: the first asking gets the first answer, the second (and later) the second
    answerer = SourcedAnswerer(["human"], human={"img": {"is it sunny?": ["first", "second"]}})
    asked_once, asked_twice = Dialog("", (("is it sunny?", "x"),)), Dialog("", (("is it sunny?", "x"),) * 2)
    assert answerer.answer(["img"] * 3, [Dialog(""), asked_once, asked_twice], ["Is it  sunny?"] * 3) == [
        "first", "second", "second"]


def test_live_world_writes_blip2_answers_through_the_store(setup, tmp_path):
    from chatir_env.answerers.blip2 import Blip2Answerer, images_from_root

    model, processor = tiny_blip2("t5", seed=3)
    blip2 = Blip2Answerer(model, processor, images_from_root(setup["coco"]), device="cpu", max_new_tokens=3)
    calls = []

    class Counting:
        def answer(self, targets, dialogs, questions):
            calls.append(list(questions))
            return blip2.answer(targets, dialogs, questions)

    store_path = tmp_path / "live.sqlite"
    kw = {**setup["kwargs"], "answer_store": str(store_path), "store_fingerprint": FINGERPRINT, "global_pool": 2,
          "image_root": str(setup["coco"]), "answer_sources": ["store", "human", "blip2", "dont_know"]}
    env = gym.make("ChatIR/VisDialTrain-v0", **kw, answerer=Counting())
    target = env.unwrapped.world.targets[0]
    env.reset(options={"target": target})
    own_q, own_a = setup["asked"][image_number(target)][2]
    *_, info = env.step(own_q)
    assert info["answer"] == own_a and calls == []  # human before BLIP2
    *_, info = env.step("is the bus red?")  # nobody asked it: BLIP2 answers
    expected = blip2.answer([target], [Dialog("")], ["is the bus red?"])[0]
    assert calls == [["is the bus red?"]] and info["answer"] == expected
    assert AnswerStore(store_path, FINGERPRINT, readonly=True).get_many([(target, "is the bus red?")]) == [expected]
    env.reset(options={"target": target})
    *_, info = env.step("is the bus red?")
    assert info["answer"] == expected and len(calls) == 1  # the store answered; BLIP2 was not asked again
    # an answerer that says who it is must be the store's: its answers would be filed under another's name
    Counting.fingerprint = "another blip2"
    with pytest.raises(ValueError, match="'another blip2'"):
        build_world("visdial_train", **kw, answerer=Counting())
    # BLIP2 looks at the images: without them and without a ready answerer, a clear error
    no_images = {k: v for k, v in kw.items() if k != "image_root"}
    with pytest.raises(VisDialSetupError, match="train2014.zip"):
        build_world("visdial_train", **no_images, blip2_model=str(tmp_path))


def test_replay_world_never_runs_blip2(setup, tmp_path):
    with pytest.raises(ValueError, match="ChatIR/VisDialTrain-v0"):
        build_world("visdial_train_replay", **setup["kwargs"], answer_sources=["store", "blip2"],
                    answer_store=str(tmp_path / "a.sqlite"), store_fingerprint=FINGERPRINT)
    with pytest.raises(ValueError, match="no answer_store"):
        build_world("visdial_train_replay", **setup["kwargs"])


def test_chatir_answer_fills_the_store_the_replay_world_reads(setup, tmp_path):
    """docs/visdial.md, "Training questioners", step 3 then step 4's world: BLIP2's answers to every pool
    question of both splits, read back by the replay world under the store's own fingerprint."""
    pytest.importorskip("chatir_env.data.answer_cli", reason="`chatir answer` is not part of this tree")
    from chatir_env.answerers.blip2 import Blip2Answerer

    model, processor = tiny_blip2("t5", seed=5)
    Blip2Answerer(model, processor, lambda _: None, device="cpu").save_pretrained(tmp_path / "blip2")
    pools = {"global_pool": 2, "max_pool": 12}
    args = ["answer", "--world", "visdial_train_replay", "--answerer-model", str(tmp_path / "blip2"),
            "--images", str(setup["coco"]), "--answerer-arg", "device=cpu", "--store", str(tmp_path / "blip2.sqlite"),
            "--no-progress", "--world-arg", 'answer_sources=["human", "dont_know"]']
    for key, value in {**setup["kwargs"], **pools}.items():
        args += ["--world-arg", f"{key}={value}"]
    for split in ("train", "val"):
        assert cli_main([*args, "--world-arg", f"split={split}"]) == 0
    world = build_world("visdial_train_replay", **setup["kwargs"], **pools, answer_store=str(tmp_path / "blip2.sqlite"))
    assert len(world.answerer.store) == 22 * 10 + 2 * 11  # images 1 and 2 add "how many people?" to their ten
    target = world.targets[0]
    pool = world.question_pool(target)
    world.answerer.answer([target] * len(pool), [Dialog("")] * len(pool), pool)
    assert dict(world.answerer.answered_by) == {"store": len(pool)}


# --- the leakage guard and missing pieces ----------------------------------------------------------


def test_leakage_guard_names_the_offending_image(setup):
    kw = {**setup["kwargs"], "benchmark_index": str(setup["root"] / "index" / "bench_leaky")}
    with pytest.raises(TrainingLeakageError) as err:
        build_world("visdial_train_replay", **kw, answer_sources=["human", "dont_know"])
    message = str(err.value)
    assert "1 images" in message and coco_name(7) in message and "unlabeled2017/000000000777.jpg" in message
    with pytest.raises(VisDialSetupError, match="benchmark_index"):
        build_world("visdial_train_replay", **{**kw, "benchmark_index": None}, answer_sources=["human"])
    unchecked = build_world("visdial_train_replay", **kw, check_leakage=False, answer_sources=["human"])
    assert coco_name(7) in unchecked.targets


def test_an_index_without_hashes_says_how_to_add_them(setup, tmp_path):
    old = tmp_path / "old_bench"
    for suffix in (".safetensors", ".json"):
        shutil.copy((setup["root"] / "index" / "bench").with_suffix(suffix), old.with_suffix(suffix))
    meta = json.loads(old.with_suffix(".json").read_text())
    del meta["meta"]["content_sha256"]
    old.with_suffix(".json").write_text(json.dumps(meta))
    kw = {**setup["kwargs"], "benchmark_index": str(old)}
    with pytest.raises(MissingContentHashesError, match="--add-hashes") as err:
        build_world("visdial_train_replay", **kw, answer_sources=["human"])
    assert str(old) in str(err.value)
    _index(setup["blip"], setup["bench"], old, "--search-space", str(setup["root"] / "search_space.json"), "--add-hashes")
    assert ImageIndex.read_content_hashes(old) == ImageIndex.read_content_hashes(setup["root"] / "index" / "bench")
    build_world("visdial_train_replay", **kw, answer_sources=["human"])


def test_missing_train_file_and_index_are_clear_errors(setup, tmp_path):
    kw = setup["kwargs"]
    with pytest.raises(VisDialSetupError, match="visualdialog.org"):
        build_world("visdial_train_replay", **{**kw, "train_file": str(tmp_path / "nothing.json")}, answer_sources=["human"])
    with pytest.raises(VisDialSetupError, match="--visdial-train"):
        build_world("visdial_train_replay", **{**kw, "index": str(tmp_path / "none")}, answer_sources=["human"])


# --- training --------------------------------------------------------------------------------------


def test_ppo_trains_on_the_replay_world_and_plays_the_benchmark(setup, tmp_path):
    """`chatir train ppo` over the pools of VisDialTrainReplay-v0 (validation on the held-out slice),
    then `chatir benchmark` of the best policy on a stand-in VisDialReplay-v0 release."""
    import yaml

    target_answers = [(coco_name(i), q, f"stored {j}") for i in IMAGE_IDS for j, (q, _) in enumerate(setup["asked"][i][:3])]
    _store(tmp_path / "answers.sqlite", target_answers)
    out = tmp_path / "ppo"
    config = {
        "world": "visdial_train_replay",
        "world_kwargs": {**setup["kwargs"], "answer_store": str(tmp_path / "answers.sqlite"), "global_pool": 2},
        "validation": {"split": "val"}, "max_pool": 40, "top_k": 10,
        "num_envs": 4, "total_timesteps": 400, "n_steps": 20, "batch_size": 40, "n_epochs": 1,
        "eval_every": 200, "eval_targets": 4, "net_arch": [16], "out_dir": str(out),
    }
    path = tmp_path / "ppo_test.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli_main(["train", "ppo", "--config", str(path)]) == 0
    history = json.loads((out / "validation.json").read_text())
    assert len(history) >= 2 and history[-1]["timesteps"] >= 400
    assert (out / "best_policy.pt").exists()

    # the benchmark world: a stand-in ChatIR release over the stand-in search space
    release = tmp_path / "release"
    release.mkdir()
    shutil.copy(setup["root"] / "search_space.json", release / "Search_Space_val_50k.json")
    for name in ("ChatGPT_BLIP2.json", "FLAN_ALPACA_XXL_BLIP2.json", "Human_BLIP2.json", "Unanswered_ChatGPT_BLIP2.json"):
        entries = [{"img": img, "dialog": [f"a {WORDS[k]} photo"] + [f"is there a {w}? {'yes' if j % 2 else 'no'}"
                                                                     for j, w in enumerate(WORDS[k: k + 10])]}
                   for k, img in enumerate(setup["search_space"][:3])]
        (release / name).write_text(json.dumps(entries))
    bench_config = {
        "name": "ppo_visdial_train_test", "max_rounds": 10, "num_targets": 3,
        "worlds": [{"name": "replay", "world": "visdial_replay",
                    "args": {"data_dir": str(release), "index": str(setup["root"] / "index" / "bench"),
                             "retriever_model": str(setup["blip"]), "device": "cpu"}}],
        "questioners": [{"name": "ppo", "questioner": "policy", "args": {"policy": str(out / "best_policy.pt")}}],
        "out_dir": str(tmp_path / "bench_out"),
    }
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(bench_config))
    assert cli_main(["benchmark", "--config", str(tmp_path / "bench.yaml")]) == 0
    results = json.loads((tmp_path / "bench_out" / "results.json").read_text())
    assert results["config"]["failures"] == {}
    assert len(results["results"]["replay/ppo"]["hits@10"]) == 11  # rounds 0-10 of the benchmark protocol


def test_replay_answerer_reads_unrecorded_questions_from_the_store(tmp_path):
    from chatir_env.worlds.visdial import ReplayAnswerer

    records = {"Human_BLIP2.json": [("img/1.jpg", Dialog("a cat", (("is it sunny?", "no"),)))]}
    store = _store(tmp_path / "s.sqlite", [("img/1.jpg", "is it sunny?", "yes"), ("img/1.jpg", "what color?", "red")])
    answerer = ReplayAnswerer(records, answer_store=store)
    # the recording wins for a recorded question; the store answers the others; then the fallback
    assert answerer.answer(["img/1.jpg"] * 3, [Dialog("a cat")] * 3, ["is it sunny?", "What color?", "how many?"]) == [
        "no", "red", "i don't know"]


def test_the_recipes_name_only_fields_their_code_takes():
    import inspect

    from chatir_env.config import load_config, validate
    from chatir_env.train.ppo import PPOConfig
    from chatir_env.worlds.visdial import build_visdial_replay_world
    from chatir_env.worlds.visdial_train import build_visdial_train_replay_world

    ppo = load_config("ppo_visdial_train")
    cfg = validate(PPOConfig, ppo)
    assert cfg.world == "visdial_train_replay" and cfg.max_pool == 40 == cfg.world_kwargs["max_pool"]
    # what train/ppo.py passes to the training and the validation world
    inspect.signature(build_visdial_train_replay_world).bind(split="train", num_targets=None, **cfg.world_kwargs)
    inspect.signature(build_visdial_train_replay_world).bind(num_targets=cfg.eval_targets,
                                                             **{**cfg.world_kwargs, **cfg.validation})
    bench = load_config("visdial_train_benchmark")
    (replay,) = [w for w in bench["worlds"] if w["world"] == "visdial_replay"]
    inspect.signature(build_visdial_replay_world).bind(**replay["args"])
    (policy,) = [q for q in bench["questioners"] if q["questioner"] == "policy"]
    assert policy["args"]["policy"] == f"{cfg.out_dir}/best_policy.pt" and policy["worlds"] == ["replay"]


def test_shared_questions_count_only_the_dialogs_left_in():
    from chatir_env.worlds.visdial_train import TrainingDialogs

    def dialog(*questions):
        return Dialog("c", tuple((q, "a") for q in questions))

    data = TrainingDialogs({"A": dialog("x?", "y?"), "B": dialog("Y?", "z?"), "C": dialog("z?", "w?"), "D": dialog("z?")})
    assert data.most_frequent(2) == ["z?", "y?"]                       # z 3, y 2 (case folded)
    assert data.most_frequent(2, leave_out=["D"]) == ["y?", "z?"]      # 2 each: the first asked first
    assert data.most_frequent(2, leave_out=["C", "D"]) == ["y?", "x?"]  # y 2; x and z 1, x asked first
    assert data.own["B"] == ("Y?", "z?") and data.human["B"] == {"y?": ["a"], "z?": ["a"]}

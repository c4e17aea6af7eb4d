import math

import numpy as np
import pytest
import torch

from chatir_env.dialog import Dialog
from chatir_env.worlds.shapes_language import (
    ANSWERS,
    POOL_TEXTS,
    QUESTION_POOL,
    answer_table,
    caption_facts,
    caption_text,
    captions,
    parse_caption,
    parse_question,
)
from chatir_env.worlds.shapes_oracle import ShapesOracle
from chatir_env.worlds.shapes_retrievers import ShapesExactRetriever
from chatir_env.worlds.shapes_scenes import CELLS, COLOURS, SHAPES, SceneSet, perturb_scenes, render_scene, sample_scenes


def one_scene() -> SceneSet:
    """A large red star at top left, a small blue circle at the center, a small red star bottom right, on grass."""
    obj = lambda vals: np.array([vals + [-1] * (4 - len(vals))])
    return SceneSet(
        count=np.array([3]), background=np.array([0]),
        shape=obj([SHAPES.index("star"), SHAPES.index("circle"), SHAPES.index("star")]),
        colour=obj([COLOURS.index("red"), COLOURS.index("blue"), COLOURS.index("red")]),
        size=obj([1, 0, 0]),
        cell=obj([CELLS.index("top left"), CELLS.index("center"), CELLS.index("bottom right")]),
    )


@pytest.mark.parametrize("question, answer", [
    ("how many objects are there?", "three"),
    ("how many stars are there?", "two"),
    ("how many crosses are there?", "none"),
    ("how many red objects are there?", "two"),
    ("is there a red star?", "yes"),
    ("is there a blue star?", "no"),
    ("is there anything blue?", "yes"),
    ("what color is the star?", "red"),           # two stars, both red: the colour is known
    ("what color is the heart?", "there is none"),
    ("what shape is the red object?", "star"),
    ("what shape is the blue object?", "circle"),
    ("is the star large?", "i can't tell"),        # one large, one small
    ("is the circle large?", "no"),
    ("where is the circle?", "center"),
    ("where is the star?", "i can't tell"),
    ("where is the green object?", "there is none"),
    ("what is in the top left?", "a large red star"),
    ("what is in the center?", "a small blue circle"),
    ("what is in the top?", "nothing"),
    ("what is the background?", "grass"),
    ("  What colour is the STAR ", "red"),          # free text is normalised
    ("what is the weather like?", "i don't know"),  # outside the language
])
def test_oracle_answers_a_hand_built_scene(question, answer):
    scenes = one_scene()
    oracle = ShapesOracle(answer_table(scenes), {"s": 0})
    assert oracle.answer(["s"], [Dialog("")], [question]) == [answer]


def test_every_pool_answer_is_in_its_answer_set():
    scenes = sample_scenes(3_000, 0)
    table = answer_table(scenes)
    for q, pq in enumerate(QUESTION_POOL):
        assert {ANSWERS[a] for a in np.unique(table[:, q])} <= set(pq.answers), pq.text


def test_answer_noise_rate_and_determinism():
    scenes = sample_scenes(1, 0)
    table = answer_table(scenes)
    noisy = ShapesOracle(table, {"s": 0}, answer_noise=0.3)
    q = "what is the background?"
    truth = ShapesOracle(table, {"s": 0}).answer(["s"], [Dialog("")], [q])[0]
    answers = [noisy.answer(["s"], [Dialog("", (("x", "y"),) * r)], [q])[0] for r in range(2_000)]
    rate = np.mean([a != truth for a in answers])
    assert 0.25 < rate < 0.35
    assert answers == [noisy.answer(["s"], [Dialog("", (("x", "y"),) * r)], [q])[0] for r in range(2_000)]
    with pytest.raises(ValueError, match="answer_noise"):
        ShapesOracle(table, {"s": 0}, answer_noise=1.5)


def test_captions_are_true_partial_and_parse_back():
    scenes = sample_scenes(5_000, 4)
    for i in range(len(scenes)):
        facts = caption_facts(scenes, i, 9)
        assert parse_caption(caption_text(facts)) == facts
        for size, colour, shape in facts.objects:  # every mentioned object is in the scene
            match = (scenes.colour[i] == colour) & (scenes.shape[i] == shape)
            if size is not None:
                match &= scenes.size[i] == size
            assert match.any()
        assert len(facts.objects) <= scenes.count[i]
    caps = captions(scenes, 9, range(200))
    assert not any(" a o" in c or " a a" in c for c in caps), "article before a vowel must be 'an'"


def test_exact_retriever_dot_product_is_the_dialog_log_likelihood():
    p = 0.1
    scenes = sample_scenes(60, 2)
    table = answer_table(scenes)
    retriever = ShapesExactRetriever(answer_noise=p)
    turns = (("how many objects are there?", "two"), ("what is in the center?", "nothing"), ("is there a red star?", "yes"))
    scores = retriever.encode_dialogs([Dialog("", turns)]) @ retriever.encode_images(scenes).T
    loglik = np.zeros(len(scenes))
    for q_text, a in turns:
        q = parse_question(q_text)
        k = len(QUESTION_POOL[q].answers)
        loglik += np.where(np.array([ANSWERS[x] for x in table[:, q]]) == a, math.log(1 - p), math.log(p / (k - 1)))
    # equal up to one constant shared by all scenes
    diff = scores[0].double().numpy() - loglik
    assert np.ptp(diff) < 1e-4


def test_exact_retriever_puts_caption_violations_below_every_consistent_scene():
    scenes = sample_scenes(2_000, 5)
    retriever = ShapesExactRetriever()
    caption = caption_text(caption_facts(scenes, 0, 1))
    scores = (retriever.encode_dialogs([Dialog(caption)]) @ retriever.encode_images(scenes).T)[0]
    facts = parse_caption(caption)
    consistent = np.ones(len(scenes), bool)
    for size, colour, shape in facts.objects:
        m = (scenes.colour == colour) & (scenes.shape == shape)
        consistent &= (m & (scenes.size == size)).any(1) if size is not None else m.any(1)
    if facts.background is not None:
        consistent &= scenes.background == facts.background
    if facts.count is not None:
        consistent &= scenes.count == facts.count
    assert consistent[0]
    assert scores[torch.from_numpy(consistent)].min() > scores[torch.from_numpy(~consistent)].max()


def test_twins_differ_in_exactly_one_thing():
    scenes = sample_scenes(500, 6)
    twins = perturb_scenes(scenes, 1)
    kinds = set()
    for i in range(500):
        n = scenes.count[i]
        assert twins.count[i] == n
        changed = [("background", 0)] if scenes.background[i] != twins.background[i] else []
        for name in ("shape", "colour", "size", "cell"):
            before, after = getattr(scenes, name)[i, :n], getattr(twins, name)[i, :n]
            changed += [(name, int(j)) for j in np.flatnonzero(before != after)]
        assert len(changed) == 1, (i, scenes.describe(i), twins.describe(i), changed)
        kinds.add(changed[0][0])
        if changed[0][0] == "cell":  # a moved object lands on a free cell: no two objects share one
            assert len(set(twins.cell[i, :n].tolist())) == n
    assert kinds == {"background", "shape", "colour", "size", "cell"}


def test_rendering_is_seeded_and_shows_the_scene():
    scenes = one_scene()
    img = np.asarray(render_scene(scenes, 0, 36))
    assert img.shape == (36, 36, 3)
    assert np.array_equal(img, np.asarray(render_scene(scenes, 0, 36)))
    top_left = img[:12, :12].reshape(-1, 3)
    assert ((top_left[:, 0] > 180) & (top_left[:, 1] < 80)).sum() > 20  # red pixels where the red star is


def test_pool_is_parsed_back_and_balanced_over_kinds():
    assert all(parse_question(q) == i for i, q in enumerate(POOL_TEXTS))
    assert len(set(POOL_TEXTS)) == len(POOL_TEXTS) == 121


def test_shipped_learned_retriever_loads_and_matches_its_record():
    import json

    from chatir_env.worlds.shapes import load_dual_encoder, weights_path
    from chatir_env.worlds.shapes_retrievers import ShapesLearnedRetriever

    meta = json.loads(weights_path().with_suffix(".json").read_text())
    retriever = ShapesLearnedRetriever(load_dual_encoder())
    assert retriever.fingerprint == meta["fingerprint"]
    assert meta["command"].startswith("chatir train retriever --config")
    # the learned encoder reads answers: the true answer ranks the target above a wrong one
    scenes = one_scene()
    images = retriever.encode_images(scenes)
    right = retriever.encode_dialogs([Dialog("a large red star", (("what is in the center?", "a small blue circle"),))])
    wrong = retriever.encode_dialogs([Dialog("a large red star", (("what is in the center?", "nothing"),))])
    assert (right @ images.T).item() > (wrong @ images.T).item()


def test_missing_weights_say_how_to_make_them(tmp_path):
    from chatir_env.worlds.shapes import load_dual_encoder

    with pytest.raises(FileNotFoundError, match="chatir train retriever --config retriever_shapes"):
        load_dual_encoder(str(tmp_path / "none.safetensors"))


def _caption_facts_held(scenes: SceneSet, i: int, facts) -> list[bool]:
    """Whether scene ``i`` satisfies each fact of a caption: each mention, the background, the count."""
    n = scenes.count[i]
    held = []
    for size, colour, shape in facts.objects:
        match = (scenes.colour[i, :n] == colour) & (scenes.shape[i, :n] == shape)
        held.append(bool((match & (scenes.size[i, :n] == size)).any() if size is not None else match.any()))
    if facts.background is not None:
        held.append(bool(scenes.background[i] == facts.background))
    if facts.count is not None:
        held.append(bool(n == facts.count))
    return held


def test_caption_negatives_falsify_one_caption_fact_and_keep_the_rest():
    from chatir_env.worlds.shapes_training import caption_violations

    scenes = sample_scenes(400, 8)
    which, obj = caption_violations(scenes, caption_seed=5, rng=np.random.default_rng(0))
    twins = perturb_scenes(scenes, 2, which=which, obj=obj)
    falsified = 0
    for i in range(len(scenes)):
        facts = caption_facts(scenes, i, 5)
        assert all(_caption_facts_held(scenes, i, facts))
        held = _caption_facts_held(twins, i, facts)
        assert held.count(False) <= 1, (scenes.describe(i), twins.describe(i), caption_text(facts))
        falsified += held.count(False)
    # a changed object can still be matched by an identical unchanged one ("two red stars"), rarely
    assert falsified >= 0.95 * len(scenes)
    # the random twins mostly leave the caption true: the point of aiming at it
    random_twins = perturb_scenes(scenes, 2)
    assert sum(all(_caption_facts_held(random_twins, i, caption_facts(scenes, i, 5))) for i in range(400)) > 200


def test_caption_negatives_zero_draws_the_original_batches():
    from chatir_env.worlds.shapes_training import ShapesDialogSampler

    plain = ShapesDialogSampler(batch_size=8, num_scenes=50, image_size=12)
    hard = ShapesDialogSampler(batch_size=8, num_scenes=50, image_size=12, caption_negatives=1.0)
    (p0, d0), (p1, d1) = plain(3), hard(3)
    assert d0[:4] == d1[:4] and torch.equal(p0[:4], p1[:4])  # same anchors, captions and questions
    assert [len(d.turns) for d in d0[4:]] == [len(d.turns) for d in d1[4:]]
    assert not torch.equal(p0[4:], p1[4:])  # twins aimed at the captions

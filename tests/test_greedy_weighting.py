"""How the greedy information-gain questioner weighs its candidates: a calibrated posterior or uniform."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.torch import load_file

from chatir_env.agents.greedy import GreedyInfoGainQuestioner
from chatir_env.answer_entropy import candidate_weights
from chatir_env.core import Candidates
from chatir_env.worlds.shapes import load_dual_encoder, weights_path
from chatir_env.worlds.shapes_retrievers import ShapesExactRetriever, ShapesLearnedRetriever

# Three candidates scored 0.5, 0.3, 0.1 (cosines); at T = 0.1 the posterior is e^5, e^3, e^1 over their sum
# (148.413159 + 20.085537 + 2.718282 = 171.216978).
SCORES = [0.5, 0.3, 0.1]
POSTERIOR_T01 = [0.866813332, 0.117310428, 0.015876240]
# Question 0 separates candidate 0 from 1 and 2; question 1 separates 2 from 0 and 1; question 2 answers alike.
CODES = {"a": [0, 0, 7], "b": [1, 0, 7], "c": [1, 1, 7]}
# Entropies (nats) of a two-way split with masses p and 1 - p.
H_POSTERIOR = [0.392399845, 0.081523717, 0.0]  # p = 0.866813 / p = 0.015876
H_UNIFORM = [0.636514168, 0.636514168, 0.0]  # p = 1/3 both


def _world(retriever):
    return SimpleNamespace(name="fake", retriever=retriever,
                           pool_answers=lambda ids: np.array([CODES[i] for i in ids]))


def _observation(scores=SCORES):
    candidates = Candidates(ids=("a", "b", "c"), positions=np.arange(3), scores=np.array(scores), dialog_vector=np.zeros(2))
    return {"candidates": candidates, "questions": [], "round": 0}


def _gain(questioner, retriever, scores=SCORES):
    questioner.bind_world(_world(retriever))
    return questioner.information_gain([_observation(scores)])[0]


class _DualEncoderScores:  # the attributes the questioner reads from a learned retriever
    scores_are_log_likelihoods = False
    logit_scale = 10.0  # T = 0.1


def test_weights_equal_a_hand_computed_softmax_at_a_temperature():
    np.testing.assert_allclose(candidate_weights(np.array([SCORES]), 1 / 0.1)[0], POSTERIOR_T01, rtol=1e-8)
    np.testing.assert_allclose(candidate_weights(np.array([SCORES]), None)[0], [1 / 3] * 3)


def test_posterior_weighting_reads_the_retrievers_logit_scale():
    q = GreedyInfoGainQuestioner(top_k=3)
    np.testing.assert_allclose(_gain(q, _DualEncoderScores()), H_POSTERIOR, rtol=1e-7)
    assert q.softmax_scale == 10.0


def test_an_explicit_temperature_overrides_the_retrievers():
    retriever = SimpleNamespace(scores_are_log_likelihoods=False, logit_scale=1000.0)
    q = GreedyInfoGainQuestioner(top_k=3, temperature=0.1)
    np.testing.assert_allclose(_gain(q, retriever), H_POSTERIOR, rtol=1e-7)


def test_uniform_weighting_reproduces_the_old_top_k_weighting():
    q = GreedyInfoGainQuestioner(top_k=3, weighting="uniform")
    np.testing.assert_allclose(_gain(q, _DualEncoderScores()), H_UNIFORM, rtol=1e-8)
    assert q.softmax_scale is None


def test_the_two_weightings_ask_different_questions():
    # Four candidates scored 0.5, 0.3, 0.1, 0.0. "halves" splits {a, b} from {c, d}: ln 2 uniformly, but the
    # posterior at T = 0.1 puts 0.978 on {a, b}; "top" splits {a} from the rest: H(1/4) = 0.562 uniformly,
    # H(0.862) = 0.402 under the posterior, so uniform asks "halves" and the posterior asks "top".
    codes = {"a": [0, 0], "b": [0, 1], "c": [1, 1], "d": [1, 1]}
    world = SimpleNamespace(name="fake", retriever=_DualEncoderScores(),
                            pool_answers=lambda ids: np.array([codes[i] for i in ids]))
    candidates = Candidates(ids=("a", "b", "c", "d"), positions=np.arange(4), scores=np.array([0.5, 0.3, 0.1, 0.0]),
                            dialog_vector=np.zeros(2))
    asked = {}
    for weighting in ("uniform", "posterior"):
        q = GreedyInfoGainQuestioner(top_k=4, weighting=weighting)
        q.bind_world(world)
        q.reset([""], pools=[["halves", "top"]])
        asked[weighting] = q.ask([{"candidates": candidates, "questions": [], "round": 0}])
    assert asked == {"uniform": ["halves"], "posterior": ["top"]}


def test_the_exact_retrievers_log_likelihoods_keep_scale_one():
    # log-likelihoods ln 0.6, ln 0.3, ln 0.1: the posterior is 0.6 / 0.3 / 0.1, whatever the weighting default
    q = GreedyInfoGainQuestioner(top_k=3)
    gain = _gain(q, ShapesExactRetriever(), scores=np.log([0.6, 0.3, 0.1]))
    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    np.testing.assert_allclose(gain, [h(0.6), h(0.1), 0.0], rtol=1e-8)
    assert q.softmax_scale == 1.0


def test_the_shipped_encoders_trained_logit_scale_is_what_the_questioner_uses():
    stored = float(np.exp(load_file(str(weights_path()))["logit_scale"].item()))
    assert stored == pytest.approx(47.3400, abs=1e-3)  # exp(3.8574): InfoNCE temperature 0.0211
    retriever = ShapesLearnedRetriever(load_dual_encoder())
    assert retriever.logit_scale == pytest.approx(stored, rel=1e-6)
    q = GreedyInfoGainQuestioner()
    q.bind_world(_world(retriever))
    assert q.softmax_scale == pytest.approx(stored, rel=1e-6)


def test_bad_weighting_arguments_are_refused_with_their_value():
    with pytest.raises(ValueError, match="'softmax'"):
        GreedyInfoGainQuestioner(weighting="softmax")
    with pytest.raises(ValueError, match="-1"):
        GreedyInfoGainQuestioner(temperature=-1)
    with pytest.raises(ValueError, match="posterior"):
        GreedyInfoGainQuestioner(weighting="uniform", temperature=0.1)
    with pytest.raises(ValueError, match="logit_scale"):
        GreedyInfoGainQuestioner().bind_world(_world(SimpleNamespace()))


def _joint_entropy(codes, weights, questions):
    mass: dict = {}
    for row, w in zip(codes, weights):
        key = tuple(row[q] for q in questions)
        mass[key] = mass.get(key, 0.0) + w
    p = np.array(list(mass.values()))
    return float(-(p * np.log(p)).sum())


def test_two_step_information_is_the_best_joint_entropy_of_two_questions():
    from chatir_env.answer_entropy import two_step_information

    rng = np.random.default_rng(0)
    codes, weights = rng.integers(0, 3, (7, 5)), rng.random(7)
    weights /= weights.sum()
    allowed = np.array([True, True, False, True, True])
    value = two_step_information(codes, weights, allowed)
    for q in range(5):
        if not allowed[q]:
            assert value[q] == -np.inf
            continue
        # the second question is chosen after hearing the first answer
        plan = _joint_entropy(codes, weights, (q,))
        for answer in np.unique(codes[:, q]):
            rows = codes[:, q] == answer
            p_answer = weights[rows].sum()
            plan += p_answer * max(_joint_entropy(codes[rows], weights[rows] / p_answer, (q2,))
                                   for q2 in np.flatnonzero(allowed))
        assert value[q] == pytest.approx(plan)


def test_lookahead_two_asks_what_plans_best_where_greedy_asks_what_splits_most():
    # Five candidates alike; answers of questions x, y, z:
    #   x: {a, b, e} {c} {d}   H = 0.950, greedy's pick (first of the two largest)
    #   y: {a, d, e} {b, c}    H = 0.673
    #   z: {a} {b, c, e} {d}   H = 0.950
    # After y, z separates a, d, e and x separates b, c: every candidate identified (ln 5 = 1.609).
    # After x, neither y nor z separates all of a, b, e (1.332).
    codes = {"a": [2, 2, 2], "b": [2, 0, 1], "c": [0, 0, 1], "d": [1, 2, 0], "e": [2, 2, 1]}
    pool = ["x", "y", "z"]
    world = SimpleNamespace(name="fake", retriever=ShapesExactRetriever(),
                            pool_answers=lambda ids: np.array([codes[i] for i in ids]))
    candidates = Candidates(ids=tuple(codes), positions=np.arange(5), scores=np.zeros(5), dialog_vector=np.zeros(2))
    asks = {}
    for lookahead in (1, 2):
        questioner = GreedyInfoGainQuestioner(top_k=5, lookahead=lookahead)
        questioner.bind_world(world)
        questioner.reset(["caption"], [pool])
        asks[lookahead] = questioner.ask([{"candidates": candidates, "questions": [], "round": 0}])[0]
    assert asks == {1: "x", 2: "y"}
    with pytest.raises(ValueError, match="lookahead must be 1 or 2"):
        GreedyInfoGainQuestioner(lookahead=3)

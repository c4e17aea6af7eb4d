"""EpisodeBatch, the one round loop: passes, refused questions, the rank record, the read-only view.

A four-item corpus in two dimensions with a stub retriever makes every rank hand-computable: a dialog
of t turns encodes to the unit vector ``TURN_VECTORS[t]``, and the target (item 3, [0, 1]) then ranks
3, 2 and 0 (``expected ranks`` below, counted by hand from the dot products).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded

from chatir_env.core import CoreView, EpisodeBatch, InvalidQuestionError
from chatir_env.index import ImageIndex
from chatir_env.rewards import RewardFn
from chatir_env.worlds.base import World

CORPUS = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
IDS = ["a", "b", "c", "d"]
# turns -> dialog vector; target "d" scores 0, 0.8, 1 and the others [1, .8, .6], [.6, .96, 1], [0, .6, .8]:
TURN_VECTORS = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.0, 1.0]]
EXPECTED_RANK = [3, 2, 0, 0]  # 3 items above at t=0; c (1.0) and b (0.96) above 0.8 at t=1; none at t=2


class TurnCountRetriever:
    fingerprint, dim, device = "turns", 2, torch.device("cpu")

    def encode_images(self, items):
        raise NotImplementedError

    def encode_dialogs(self, dialogs):
        return torch.tensor([TURN_VECTORS[d.round] for d in dialogs])


class EchoAnswerer:
    def answer(self, targets, dialogs, questions):
        return [f"answer to {q}" for q in questions]


def stub_world(pool=None) -> World:
    return World("stub", TurnCountRetriever(), ImageIndex(CORPUS.clone(), list(IDS), "turns"), EchoAnswerer(),
                 targets=["d", "c"], captions={"d": "the last one", "c": "the third one"},
                 question_pool=(lambda target: pool) if pool is not None else None)


def test_ranks_and_rewards_follow_hand_computed_rank_changes():
    core = EpisodeBatch(stub_world(), 1, max_rounds=3)
    core.reset([0], ["d"])
    assert core.ranks.tolist() == [EXPECTED_RANK[0]]
    first = core.step(["is it blue?"])
    assert first.ranks.tolist() == [2]
    assert first.rewards[0] == pytest.approx(math.log(4) - math.log(3))  # log_rank_delta: ln(3 + 1) - ln(2 + 1)
    second = core.step(["is it green?"])
    assert second.ranks.tolist() == [0] and second.rewards[0] == pytest.approx(math.log(3))
    assert core.rank_record().ravel().tolist()[:3] == [3, 2, 0]  # rounds 0, 1, 2
    assert core.best_ranks.tolist() == [0]


def test_hit_bonus_is_paid_once_on_entering_the_top_k():
    core = EpisodeBatch(stub_world(), 1, max_rounds=3, reward=RewardFn("log_rank_delta", 4, hit_bonus=1.0, hit_k=1))
    core.reset([0], ["d"])
    assert core.step(["q1?"]).rewards[0] == pytest.approx(math.log(4 / 3))  # rank 2: not in the top 1
    assert core.step(["q2?"]).rewards[0] == pytest.approx(math.log(3) + 1.0)  # rank 0: enters it


def test_pass_and_invalid_masks_per_slot():
    core = EpisodeBatch(stub_world(), 3, max_rounds=2, invalid="pass")
    core.reset([0, 1, 2], ["d", "d", "d"])
    result = core.step([None, "   ", "is it round?"])
    assert result.passed.tolist() == [True, True, False]
    assert result.invalid.tolist() == [False, True, False]
    assert result.problems == (None, "empty", None)
    assert result.answers == [None, None, "answer to is it round?"]
    assert result.questions == (None, None, "is it round?")
    # passes keep dialog and rank (reward 0) but use up the round
    assert [d.round for d in core.dialogs] == [0, 0, 1]
    assert result.ranks.tolist() == [3, 3, 2] and result.rewards.tolist()[:2] == [0.0, 0.0]
    assert core.rounds.tolist() == [1, 1, 1]
    done = core.step(["a?", "b" * 400, None], slots=[0, 1, 2])
    assert done.invalid.tolist() == [False, True, False] and done.problems[1] == "too_long"
    assert done.done.all() and core.rank_record().tolist() == [[3, 3, 3], [3, 3, 2], [2, 3, 2]]


def test_invalid_raise_refuses_before_playing_anything():
    core = EpisodeBatch(stub_world(), 2, max_rounds=2)
    core.reset([0, 1], ["d", "c"])
    with pytest.raises(InvalidQuestionError, match="control character U\\+0007") as err:
        core.step(["fine?", "bad\x07"])
    assert err.value.reason == "control_character"
    assert core.rounds.tolist() == [0, 0] and [d.round for d in core.dialogs] == [0, 0]


def test_stepping_a_finished_episode_needs_a_reset():
    core = EpisodeBatch(stub_world(), 2, max_rounds=1)
    core.reset([0, 1], ["d", "c"])
    core.step(["q?"], slots=[0])
    with pytest.raises(ResetNeeded, match=r"episodes \[0\] already played max_rounds=1"):
        core.step(["q?", "q?"])
    core.step(["q?"], slots=[1])  # the other slot still has its round
    core.reset([0], ["c"])
    assert core.step(["q?"], slots=[0]).done.tolist() == [True]


def test_view_is_read_only_and_holds_the_rankings_candidates():
    core = EpisodeBatch(stub_world(pool=["q1?", "q2?", "q1?"]), 1, max_rounds=3, top_k=2, max_pool=4)
    core.reset([0], ["d"])
    core.step(["q1?"])
    view = core.view()
    assert isinstance(view, CoreView)
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.ranks = np.zeros(1)
    for array in (view.ranks, view.best_ranks, view.rounds, view.rank_record, view.vectors, view.candidate_positions,
                  view.candidate_scores, view.asked):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
    # after one turn the dialog vector is [0.6, 0.8]: c (1.0) then b (0.96)
    assert view.candidate_positions.tolist() == [[2, 1]]
    np.testing.assert_allclose(view.candidate_scores, [[1.0, 0.96]], rtol=1e-6)
    candidates = core.candidates(0)
    assert candidates.ids == ("c", "b") and candidates.dialog_vector.tolist() == pytest.approx([0.6, 0.8])
    with pytest.raises(ValueError, match="read-only"):
        candidates.scores[0] = 0.0
    # the asked mask marks every copy of a repeated pool question; masks also hide the padded slot
    assert view.pools == (("q1?", "q2?", "q1?"),)
    assert view.asked.tolist() == [[True, False, True, False]]
    assert core.pool_masks().tolist() == [[False, True, False, False]]
    assert core.pool_question(0, 5) == "q1?"  # 5 % 3 = 2: padded actions wrap around


def test_a_core_without_candidates_or_pools_says_how_to_get_them():
    core = EpisodeBatch(stub_world(), 1)
    core.reset([0], ["d"])
    with pytest.raises(ValueError, match="top_k > 0"):
        core.candidates(0)
    with pytest.raises(ValueError, match="max_pool"):
        core.pool_masks()
    with pytest.raises(ValueError, match="invalid must be one of"):
        EpisodeBatch(stub_world(), 1, invalid="skip")
    with pytest.raises(ValueError, match="more than max_pool=1"):
        EpisodeBatch(stub_world(pool=["a?", "b?"]), 1, max_pool=1).reset([0], ["d"])


def test_answer_batches_must_match_in_size_and_name_the_counts():
    from chatir_env.dialog import Dialog
    from chatir_env.protocols import check_answer_batch

    check_answer_batch(["a", "b"], [Dialog("x"), Dialog("y")], ["q1", "q2"])
    check_answer_batch(["a"], None, ["q"], dialogs_optional=True)
    with pytest.raises(ValueError, match=r"got 2, 1, 2$"):
        check_answer_batch(["a", "b"], [Dialog("x")], ["q1", "q2"])
    with pytest.raises(ValueError, match=r"got 2, no, 1$"):
        check_answer_batch(["a", "b"], None, ["q"], dialogs_optional=True)
    with pytest.raises(ValueError, match="one dialog per episode, got None"):
        check_answer_batch(["a"], None, ["q"])

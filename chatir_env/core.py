"""The batched core that every ChatIR driver plays through.

One ``step`` plays one round of N episodes: one answerer batch, one encoder batch, one ranking matmul.
``ChatIREnv`` drives it with N = 1, the vector envs with N = num_envs, the eval runner and the GRPO
rollout with a batch of targets, so none of them can drift apart. What a round computed (ranks, the
dialog vectors, the top-k candidates and their scores from the same score matrix, the question pools
and which pool questions were asked) is read through ``EpisodeBatch.view()``, a frozen ``CoreView`` of
read-only arrays; nothing outside the core encodes a dialog or scores the corpus again.

Round rules, the same for every driver:

- A ``None`` question is a pass: the slot asks nothing, its dialog, rank and candidates stay, its
  reward is the reward function's for an unchanged rank (0 for every shipped reward), and its round
  counter still advances, so a pass uses up a round (ChatIR's caption-only baseline passes 10 times).
- A question that ``validate_question`` refuses either raises ``InvalidQuestionError`` (``invalid="raise"``,
  the gymnasium envs: bad input is an error) or is played as a pass flagged in ``RoundResult.invalid``
  (``invalid="pass"``: the eval runner and the GRPO rollout, where one bad question must not end a batch).
- Stepping a slot that already played ``max_rounds`` rounds raises ``gymnasium.error.ResetNeeded``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
from gymnasium.error import ResetNeeded

from .dialog import Dialog
from .rewards import RewardFn
from .worlds.base import World

DEFAULT_MAX_QUESTION_CHARS = 300
INVALID_RULES = ("raise", "pass")


class InvalidQuestionError(ValueError):
    """A question the env refuses: not a string, empty, too long, or with control characters.

    Attributes:
        reason: a machine-readable cause: ``"not_str"``, ``"empty"``, ``"too_long"`` or ``"control_character"``.
    """

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


def validate_question(question, max_chars: int = DEFAULT_MAX_QUESTION_CHARS, episode: int | None = None) -> str:
    """The question as it is asked (stripped), or ``InvalidQuestionError`` saying why it is refused.

    Args:
        question: what a questioner returned.
        max_chars: the longest question accepted, after stripping.
        episode: the slot, named in the error.

    Returns:
        The stripped question.

    Raises:
        InvalidQuestionError: not a str, empty, longer than ``max_chars``, or holding a control character.
    """
    where = "" if episode is None else f" (episode {episode})"
    if not isinstance(question, str):
        raise InvalidQuestionError(
            f"a question must be a str, got {type(question).__name__}: {question!r:.80}{where}", "not_str")
    text = question.strip()
    if not text:
        raise InvalidQuestionError(f"empty question{where}: ask something, e.g. 'is it sunny?'", "empty")
    if len(text) > max_chars:
        raise InvalidQuestionError(
            f"question of {len(text)} characters is longer than max_question_chars={max_chars}{where}: "
            f"{text[:60]!r}...", "too_long")
    for pos, ch in enumerate(text):
        if unicodedata.category(ch) == "Cc":
            raise InvalidQuestionError(
                f"question contains control character U+{ord(ch):04X} at position {pos}{where}: {text[:60]!r}",
                "control_character")
    return text


@dataclass(frozen=True)
class RoundResult:
    """What one ``EpisodeBatch.step`` did, one entry per stepped slot (in the order of ``slots``).

    Attributes:
        slots: the slots that played the round.
        questions: the question each slot asked, stripped (None where it passed).
        answers: the answerer's reply (None where the slot passed).
        ranks: ``int64``, the target's 0-based rank after the round.
        rewards: ``float64``, the reward function's value for the round.
        done: ``bool``, the slot just played its ``max_rounds``-th round.
        passed: ``bool``, the slot asked nothing (a None question, or a refused one under ``invalid="pass"``).
        invalid: ``bool``, the slot's question was refused (a subset of ``passed``).
        problems: why each refused question was refused (``InvalidQuestionError.reason``; None elsewhere).
    """

    slots: tuple[int, ...]
    questions: tuple[str | None, ...]
    answers: list[str | None]
    ranks: np.ndarray
    rewards: np.ndarray
    done: np.ndarray
    passed: np.ndarray
    invalid: np.ndarray
    problems: tuple[str | None, ...]


@dataclass(frozen=True, eq=False)
class Candidates:
    """One episode's top-k corpus items, best first, from the ranking that scored its current dialog.

    Attributes:
        ids: the corpus ids.
        positions: ``int64[k]`` corpus positions (read-only).
        scores: ``[k]`` retrieval scores (read-only; log-likelihoods under the exact Shapes scorer).
        dialog_vector: ``[d]`` the retriever's vector of the dialog that was ranked (read-only).
    """

    ids: tuple[str, ...]
    positions: np.ndarray
    scores: np.ndarray
    dialog_vector: np.ndarray

    def __eq__(self, other) -> bool:  # arrays compare by value, so seeded episodes compare equal
        if not isinstance(other, Candidates):
            return NotImplemented
        return self.ids == other.ids and all(np.array_equal(getattr(self, name), getattr(other, name))
                                             for name in ("positions", "scores", "dialog_vector"))

    __hash__ = None


@dataclass(frozen=True)
class CoreView:
    """Read-only arrays over an ``EpisodeBatch``'s live state: they change with the next round (copy to keep).

    Attributes:
        targets: each slot's target id.
        dialogs: each slot's dialog.
        ranks: ``int64[N]`` current 0-based target ranks.
        best_ranks: ``int64[N]`` the best rank of each episode so far.
        rounds: ``int64[N]`` rounds played (passes included).
        rank_record: ``int64[max_rounds + 1, N]``; row t holds the rank after round t (rows past a slot's
            ``rounds`` are stale).
        vectors: ``[N, d]`` the dialog vectors of the latest ranking (None before the first reset).
        candidate_positions: ``int64[N, top_k]`` each slot's top candidates, best first (None: ``top_k=0``).
        candidate_scores: ``[N, top_k]`` their scores, from the same score matrix as the ranks.
        pools: each slot's question pool (None: the core keeps no pools).
        asked: ``bool[N, max_pool]``; True where the slot asked that pool question (None: no pools).
    """

    targets: tuple[str, ...]
    dialogs: tuple[Dialog, ...]
    ranks: np.ndarray
    best_ranks: np.ndarray
    rounds: np.ndarray
    rank_record: np.ndarray
    vectors: np.ndarray | None
    candidate_positions: np.ndarray | None
    candidate_scores: np.ndarray | None
    pools: tuple[tuple[str, ...], ...] | None
    asked: np.ndarray | None


def _host_array(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as a numpy array on the host; half-precision kinds numpy lacks (bfloat16) become float32."""
    tensor = tensor.detach()
    if tensor.dtype not in (torch.float32, torch.float64, torch.float16):
        tensor = tensor.float()
    return tensor.cpu().numpy()


def _read_only(array: np.ndarray | None) -> np.ndarray | None:
    if array is None:
        return None
    view = array.view()
    view.flags.writeable = False
    return view


class EpisodeBatch:
    """State of N concurrent episodes over one world, and the only code that plays their rounds.

    Args:
        world: the world the episodes play in.
        num_episodes: N, the number of slots.
        max_rounds: rounds per episode.
        reward: the reward function (default: ``log_rank_delta`` over the world's corpus).
        max_question_chars: the longest question accepted.
        invalid: ``"raise"`` (refused questions raise ``InvalidQuestionError``) or ``"pass"`` (they are
            played as passes and flagged in ``RoundResult.invalid``).
        top_k: how many top candidates each ranking keeps (0: none; ranks alone use less memory).
        max_pool: keep each slot's question pool and asked mask, pools up to this size (None: no pools).

    Attributes (read them; assign only through ``reset`` and ``step``): ``world``, ``n``, ``max_rounds``,
    ``reward_fn``, ``max_question_chars``, ``invalid``, ``top_k``, ``max_pool``, ``targets``,
    ``dialogs``, ``ranks``, ``best_ranks``, ``rounds``.
    """

    def __init__(self, world: World, num_episodes: int, max_rounds: int = 10, reward: RewardFn | None = None,
                 max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS, *, invalid: Literal["raise", "pass"] = "raise",
                 top_k: int = 0, max_pool: int | None = None):
        if num_episodes < 1:
            raise ValueError(f"num_episodes must be at least 1, got {num_episodes}")
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        if invalid not in INVALID_RULES:
            raise ValueError(f"invalid must be one of {INVALID_RULES}, got {invalid!r}")
        if top_k < 0:
            raise ValueError(f"top_k must be 0 (no candidates) or more, got {top_k}")
        if max_pool is not None and world.question_pool is None:
            raise ValueError(f"world {world.name!r} has no question pool; build the core with max_pool=None")
        if max_pool is not None and max_pool < 1:
            raise ValueError(f"max_pool must be at least 1 or None, got {max_pool}")
        self.world, self.n, self.max_rounds = world, num_episodes, max_rounds
        self.reward_fn = reward or RewardFn(corpus_size=len(world.index))
        self.max_question_chars = max_question_chars
        self.invalid = invalid
        self.top_k = min(top_k, len(world.index))
        self.max_pool = max_pool
        self.targets: list[str] = [""] * num_episodes
        self._target_positions = torch.zeros(num_episodes, dtype=torch.long)
        self.dialogs: list[Dialog] = [Dialog("")] * num_episodes
        self.ranks = np.zeros(num_episodes, dtype=np.int64)
        self.best_ranks = np.zeros(num_episodes, dtype=np.int64)
        self.rounds = np.zeros(num_episodes, dtype=np.int64)
        self._rank_record = np.zeros((max_rounds + 1, num_episodes), dtype=np.int64)
        self._vectors: np.ndarray | None = None
        self._candidate_positions = np.zeros((num_episodes, self.top_k), dtype=np.int64) if self.top_k else None
        self._candidate_scores: np.ndarray | None = None
        self._pools: list[tuple[str, ...]] = [()] * num_episodes
        self._pool_index: list[dict[str, list[int]]] = [{} for _ in range(num_episodes)]
        self._asked = np.zeros((num_episodes, max_pool), dtype=bool) if max_pool else None
        self._corpus_ids: np.ndarray | None = None

    # --- reading -----------------------------------------------------------------------------------

    def view(self) -> CoreView:
        """The live state as read-only arrays (see ``CoreView``)."""
        return CoreView(
            targets=tuple(self.targets), dialogs=tuple(self.dialogs), ranks=_read_only(self.ranks),
            best_ranks=_read_only(self.best_ranks), rounds=_read_only(self.rounds), rank_record=_read_only(self._rank_record),
            vectors=_read_only(self._vectors), candidate_positions=_read_only(self._candidate_positions),
            candidate_scores=_read_only(self._candidate_scores),
            pools=tuple(self._pools) if self.max_pool else None, asked=_read_only(self._asked),
        )

    def candidates(self, slot: int) -> Candidates:
        """Slot ``slot``'s top-``top_k`` candidates from its latest ranking.

        Raises:
            ValueError: the core keeps no candidates (``top_k=0``).
        """
        if not self.top_k:
            raise ValueError("this EpisodeBatch keeps no candidates; build it with top_k > 0")
        if self._corpus_ids is None:
            self._corpus_ids = np.asarray(self.world.index.ids, dtype=object)
        positions = _read_only(self._candidate_positions[slot])
        return Candidates(tuple(self._corpus_ids[positions]), positions, _read_only(self._candidate_scores[slot]),
                          _read_only(self._vectors[slot]))

    def candidate_ids(self, slots: Sequence[int] | None = None) -> np.ndarray:
        """``object[len(slots), top_k]``: the corpus ids of the slots' candidates, best first."""
        if not self.top_k:
            raise ValueError("this EpisodeBatch keeps no candidates; build it with top_k > 0")
        if self._corpus_ids is None:
            self._corpus_ids = np.asarray(self.world.index.ids, dtype=object)
        slots = list(range(self.n)) if slots is None else list(slots)
        return self._corpus_ids[self._candidate_positions[slots]]

    def rank_record(self, slots: Sequence[int] | None = None) -> np.ndarray:
        """``int64[max_rounds + 1, len(slots)]`` copy: every rank of the slots' episodes so far (row t: after round t)."""
        slots = list(range(self.n)) if slots is None else list(slots)
        return self._rank_record[:, slots].copy()

    def pool_masks(self) -> np.ndarray:
        """``bool[N, max_pool]``: pool questions a slot may still ask (in its pool, not yet asked)."""
        if self._asked is None:
            raise ValueError("this EpisodeBatch keeps no pools; build it with max_pool")
        masks = np.zeros_like(self._asked)
        for slot, pool in enumerate(self._pools):
            masks[slot, : len(pool)] = True
        return masks & ~self._asked

    def sample_targets(self, rng: np.random.Generator, count: int) -> list[str]:
        """``count`` target ids drawn uniformly (with replacement) from the world's targets."""
        if not self.world.targets:
            raise ValueError(
                f"world {self.world.name!r} has no targets to draw from; pass one with reset(options={{'target': id}})")
        return [self.world.targets[i] for i in rng.integers(0, len(self.world.targets), count)]

    # --- playing -----------------------------------------------------------------------------------

    def _rank(self, slots: list[int]) -> np.ndarray:
        """Encode the slots' dialogs, rank their targets, keep vectors and candidates: one score matrix."""
        vectors = self.world.retriever.encode_dialogs([self.dialogs[slot] for slot in slots])
        targets = self._target_positions[slots]
        vectors_here = _host_array(vectors)
        if self._vectors is None:
            self._vectors = np.zeros((self.n, vectors_here.shape[1]), dtype=vectors_here.dtype)
        self._vectors[slots] = vectors_here
        if not self.top_k:
            return self.world.index.ranks(vectors, targets).cpu().numpy()
        ranks, (scores, positions) = self.world.index.ranks_and_top_k(vectors, targets, self.top_k)
        if self._candidate_scores is None:
            self._candidate_scores = np.zeros((self.n, self.top_k), dtype=_host_array(scores).dtype)
        self._candidate_scores[slots] = _host_array(scores)
        self._candidate_positions[slots] = positions.cpu().numpy()
        return ranks.cpu().numpy()

    def reset(self, slots: Sequence[int], targets: Sequence[str]) -> None:
        """Start new episodes in ``slots`` with the given target ids (round 0: the caption alone).

        Raises:
            UnknownTargetError: a target is not in the corpus.
            KeyError: a target has no caption.
            ValueError: a target's pool is larger than ``max_pool``.
        """
        slots = list(slots)
        positions = self.world.index.positions(targets)  # raises UnknownTargetError naming the id
        for slot, target, position in zip(slots, targets, positions.tolist(), strict=True):
            if target not in self.world.captions:
                raise KeyError(f"target {target!r} has no caption in world {self.world.name!r}")
            self.targets[slot] = target
            self._target_positions[slot] = position
            self.dialogs[slot] = Dialog(self.world.captions[target])
            if self.max_pool:
                pool = tuple(self.world.question_pool(target))
                if len(pool) > self.max_pool:
                    raise ValueError(f"target {target!r} has {len(pool)} pool questions, more than max_pool={self.max_pool}")
                self._pools[slot] = pool
                index: dict[str, list[int]] = {}
                for position_in_pool, question in enumerate(pool):
                    index.setdefault(question, []).append(position_in_pool)
                self._pool_index[slot] = index
                self._asked[slot] = False
        ranks = self._rank(slots)
        self.ranks[slots] = ranks
        self.best_ranks[slots] = ranks
        self.rounds[slots] = 0
        self._rank_record[:, slots] = 0
        self._rank_record[0, slots] = ranks

    def pool_question(self, slot: int, action: int) -> str:
        """The question pool action ``action`` asks in ``slot``: padded actions wrap around (``action % len(pool)``).

        Raises:
            ValueError: a negative action, or the core keeps no pools.
        """
        if not self.max_pool:
            raise ValueError("this EpisodeBatch keeps no pools; build it with max_pool")
        if action < 0:
            raise ValueError(f"action {action} is negative")
        pool = self._pools[slot]
        return pool[action % len(pool)]

    def step(self, questions: Sequence[str | None], slots: Sequence[int] | None = None) -> RoundResult:
        """Play one round: ``questions[i]`` in slot ``slots[i]`` (all slots by default); None passes.

        Args:
            questions: one question (or None) per slot.
            slots: the slots that play this round.

        Returns:
            A ``RoundResult`` in the order of ``slots``.

        Raises:
            ValueError: ``questions`` and ``slots`` differ in length.
            gymnasium.error.ResetNeeded: a slot already played ``max_rounds`` rounds.
            InvalidQuestionError: a refused question, under ``invalid="raise"`` (nothing is played then).
        """
        slots = list(range(self.n)) if slots is None else list(slots)
        if len(questions) != len(slots):
            raise ValueError(f"got {len(questions)} questions for {len(slots)} episodes")
        finished = [slot for slot in slots if self.rounds[slot] >= self.max_rounds]
        if finished:
            raise ResetNeeded(f"episodes {finished} already played max_rounds={self.max_rounds}; reset them first")
        asked: list[str | None] = []
        problems: list[str | None] = []
        for question, slot in zip(questions, slots):
            if question is None:
                asked.append(None)
                problems.append(None)
                continue
            try:
                asked.append(validate_question(question, self.max_question_chars, slot))
                problems.append(None)
            except InvalidQuestionError as err:
                if self.invalid == "raise":
                    raise
                asked.append(None)
                problems.append(err.reason)
        previous, previous_best = self.ranks[slots].copy(), self.best_ranks[slots].copy()
        playing = [i for i, question in enumerate(asked) if question is not None]
        playing_slots = [slots[i] for i in playing]
        answers: list[str | None] = [None] * len(slots)
        if playing:
            dialogs = [self.dialogs[slot] for slot in playing_slots]
            replies = self.world.answerer.answer([self.targets[slot] for slot in playing_slots], dialogs,
                                                 [asked[i] for i in playing])
            for i, slot, dialog, answer in zip(playing, playing_slots, dialogs, replies, strict=True):
                question = asked[i]
                self.dialogs[slot] = dialog.with_turn(question, answer)
                answers[i] = answer
                if self.max_pool:
                    self._asked[slot, self._pool_index[slot].get(question, [])] = True
            self.ranks[playing_slots] = self._rank(playing_slots)
        new = self.ranks[slots]
        best = np.minimum(previous_best, new)
        rewards = self.reward_fn(previous, new, previous_best, best)
        self.best_ranks[slots] = best
        self.rounds[slots] += 1
        self._rank_record[self.rounds[slots], slots] = new
        passed = np.array([question is None for question in asked], dtype=bool)
        invalid = np.array([problem is not None for problem in problems], dtype=bool)
        return RoundResult(tuple(slots), tuple(asked), answers, new.copy(), rewards, self.rounds[slots] >= self.max_rounds,
                           passed, invalid, tuple(problems))

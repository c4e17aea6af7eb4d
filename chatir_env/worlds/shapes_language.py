"""The Shapes language: captions, the question pool, and the scene oracle's answers.

Every pool question has a finite answer set, and its answer for every scene is computed at once
(``answer_table``: ``[scenes, questions]`` indices into ``ANSWERS``). The oracle answerer, the
exact retriever and the training data all read that one table, so they cannot disagree.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .shapes_scenes import BACKGROUNDS, CELLS, COLOURS, SHAPES, SIZES, SceneSet

NUMBERS = ("none", "one", "two", "three", "four")
PLURAL = {s: (s + "es" if s.endswith(("s", "x")) else s + "s") for s in SHAPES}
CANT_TELL = "i can't tell"
DONT_KNOW = "i don't know"
NONE_THERE = "there is none"
NOTHING = "nothing"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def object_phrase(size: int | None, colour: int, shape: int) -> str:
    words = ([SIZES[size]] if size is not None else []) + [COLOURS[colour], SHAPES[shape]]
    return f"{article(words[0])} {' '.join(words)}"


# Every answer any pool question can get, in one vocabulary.
ANSWERS: tuple[str, ...] = (
    ("yes", "no", CANT_TELL, DONT_KNOW, NONE_THERE, NOTHING)
    + NUMBERS[1:] + ("none",)[:0]
    + COLOURS + SHAPES + SIZES + CELLS + BACKGROUNDS
    + tuple(object_phrase(z, c, s) for z in range(len(SIZES)) for c in range(len(COLOURS)) for s in range(len(SHAPES)))
)
ANSWERS = tuple(dict.fromkeys(ANSWERS + NUMBERS))  # "none" for a zero count; dedupe, keep order
ANSWER_ID = {a: i for i, a in enumerate(ANSWERS)}


@dataclass(frozen=True)
class PoolQuestion:
    text: str
    kind: str  # count, exists, colour_of, shape_of, size_of, where, cell, background
    answers: tuple[str, ...]  # the finite set of answers this question can get


def normalize_question(text: str) -> str:
    """Lower-case, single spaces, one trailing '?': how free text is matched to the pool."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    text = text.replace("colour", "color").rstrip("?. ").strip()
    return text + "?"


def _build_pool() -> list[PoolQuestion]:
    nums = NUMBERS[:5]
    obj_answers = tuple(object_phrase(z, c, s) for z in range(2) for c in range(8) for s in range(6))
    pool = [PoolQuestion("how many objects are there?", "count", nums[1:])]
    pool += [PoolQuestion(f"how many {PLURAL[s]} are there?", "count", nums) for s in SHAPES]
    pool += [PoolQuestion(f"how many {c} objects are there?", "count", nums) for c in COLOURS]
    pool += [PoolQuestion(f"is there {object_phrase(None, c, s)}?", "exists", ("yes", "no"))
             for c in range(8) for s in range(6)]
    pool += [PoolQuestion(f"is there {article(s)} {s}?", "exists", ("yes", "no")) for s in SHAPES]
    pool += [PoolQuestion(f"is there anything {c}?", "exists", ("yes", "no")) for c in COLOURS]
    pool += [PoolQuestion(f"what color is the {s}?", "colour_of", COLOURS + (CANT_TELL, NONE_THERE)) for s in SHAPES]
    pool += [PoolQuestion(f"what shape is the {c} object?", "shape_of", SHAPES + (CANT_TELL, NONE_THERE)) for c in COLOURS]
    pool += [PoolQuestion(f"is the {s} large?", "size_of", ("yes", "no", CANT_TELL, NONE_THERE)) for s in SHAPES]
    pool += [PoolQuestion(f"where is the {s}?", "where", CELLS + (CANT_TELL, NONE_THERE)) for s in SHAPES]
    pool += [PoolQuestion(f"where is the {c} object?", "where", CELLS + (CANT_TELL, NONE_THERE)) for c in COLOURS]
    pool += [PoolQuestion(f"what is in the {cell}?", "cell", obj_answers + (NOTHING,)) for cell in CELLS]
    pool += [PoolQuestion("what is the background?", "background", BACKGROUNDS)]
    return pool


QUESTION_POOL: tuple[PoolQuestion, ...] = tuple(_build_pool())
POOL_TEXTS: tuple[str, ...] = tuple(q.text for q in QUESTION_POOL)
POOL_INDEX = {normalize_question(q): i for i, q in enumerate(POOL_TEXTS)}
QUESTION_KINDS: tuple[str, ...] = tuple(dict.fromkeys(q.kind for q in QUESTION_POOL))


def parse_question(text: str) -> int | None:
    """Pool index of a free-text question, or None when the oracle cannot parse it."""
    return POOL_INDEX.get(normalize_question(text))


# --- answers for every (scene, pool question) -----------------------------------------------------------

def _unique_value(mask: np.ndarray, values: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Per scene: the label of ``values`` over objects in ``mask`` if they all agree, else can't tell/none."""
    n_sel = mask.sum(1)
    big = np.iinfo(np.int64).max
    lo = np.where(mask, values, big).min(1)
    hi = np.where(mask, values, -1).max(1)
    out = np.full(len(mask), ANSWER_ID[CANT_TELL], dtype=np.int16)
    out[n_sel == 0] = ANSWER_ID[NONE_THERE]
    agree = (n_sel > 0) & (lo == hi)
    label_ids = np.array([ANSWER_ID[label] for label in labels], dtype=np.int16)
    out[agree] = label_ids[lo[agree]]
    return out


def answer_table(scenes: SceneSet) -> np.ndarray:
    """``int16[S, len(QUESTION_POOL)]``: the oracle's noiseless answer (index into ANSWERS)."""
    present = scenes.shape >= 0
    num_ids = np.array([ANSWER_ID[w] for w in NUMBERS], dtype=np.int16)
    yes, no = ANSWER_ID["yes"], ANSWER_ID["no"]
    cols: list[np.ndarray] = [num_ids[scenes.count]]
    cols += [num_ids[(scenes.shape == s).sum(1)] for s in range(6)]
    cols += [num_ids[(scenes.colour == c).sum(1)] for c in range(8)]
    cols += [np.where(((scenes.colour == c) & (scenes.shape == s)).any(1), yes, no) for c in range(8) for s in range(6)]
    cols += [np.where((scenes.shape == s).any(1), yes, no) for s in range(6)]
    cols += [np.where((scenes.colour == c).any(1), yes, no) for c in range(8)]
    cols += [_unique_value(scenes.shape == s, scenes.colour, COLOURS) for s in range(6)]
    cols += [_unique_value(scenes.colour == c, scenes.shape, SHAPES) for c in range(8)]
    cols += [_unique_value(scenes.shape == s, scenes.size, ("no", "yes")) for s in range(6)]
    cols += [_unique_value(scenes.shape == s, scenes.cell, CELLS) for s in range(6)]
    cols += [_unique_value(scenes.colour == c, scenes.cell, CELLS) for c in range(8)]
    obj_id = np.array([ANSWER_ID[object_phrase(z, c, s)] for z in range(2) for c in range(8) for s in range(6)],
                      dtype=np.int16)
    for cell in range(9):
        here = present & (scenes.cell == cell)
        slot = here.argmax(1)
        rows = np.arange(len(scenes))
        code = (scenes.size[rows, slot] * 8 + scenes.colour[rows, slot]) * 6 + scenes.shape[rows, slot]
        cols.append(np.where(here.any(1), obj_id[np.clip(code, 0, None)], ANSWER_ID[NOTHING]).astype(np.int16))
    bg_ids = np.array([ANSWER_ID[b] for b in BACKGROUNDS], dtype=np.int16)
    cols.append(bg_ids[scenes.background])
    table = np.stack(cols, axis=1).astype(np.int16)
    assert table.shape[1] == len(QUESTION_POOL)
    return table


def noisy_answer_index(true_answer: int, question: int, key: tuple, noise: float) -> int:
    """With probability ``noise``, a different answer from the question's set, chosen uniformly.

    Seeded by ``key`` (target, question, round, seed) rather than by call order, so the same episode
    gets the same answers whether it runs alone or in a batch.
    """
    if noise <= 0:
        return true_answer
    rng = np.random.default_rng(zlib.crc32(repr(key).encode()))
    if rng.random() >= noise:
        return true_answer
    options = [ANSWER_ID[a] for a in QUESTION_POOL[question].answers if ANSWER_ID[a] != true_answer]
    return int(options[rng.integers(len(options))])


# --- captions ---------------------------------------------------------------------------------------

P_TWO_MENTIONS = 0.6   # a scene with 2+ objects mentions two of them, else one
P_SIZE = 0.5           # each mention names the object's size
P_BACKGROUND = 0.5     # the caption names the background
P_COUNT = 0.3          # the caption states how many objects there are


@dataclass(frozen=True)
class CaptionFacts:
    """What a caption asserts: the mentioned objects (size or None, colour, shape), background, count."""

    objects: tuple[tuple[int | None, int, int], ...]
    background: int | None
    count: int | None


def caption_facts(scenes: SceneSet, i: int, seed: int) -> CaptionFacts:
    return caption_facts_and_slots(scenes, i, seed)[0]


def caption_facts_and_slots(scenes: SceneSet, i: int, seed: int) -> tuple[CaptionFacts, tuple[int, ...]]:
    """Scene ``i``'s caption facts and the object slots its mentions describe (in mention order)."""
    rng = np.random.default_rng([seed, i])
    n = int(scenes.count[i])
    m = 2 if n >= 2 and rng.random() < P_TWO_MENTIONS else 1
    slots = tuple(int(j) for j in sorted(rng.choice(n, m, replace=False)))
    objects = tuple(
        (int(scenes.size[i, j]) if rng.random() < P_SIZE else None, int(scenes.colour[i, j]), int(scenes.shape[i, j]))
        for j in slots
    )
    background = int(scenes.background[i]) if rng.random() < P_BACKGROUND else None
    count = n if rng.random() < P_COUNT else None
    return CaptionFacts(objects, background, count), slots


def caption_text(facts: CaptionFacts) -> str:
    phrases = [object_phrase(*o) for o in facts.objects]
    if len(phrases) == 2 and phrases[0] == phrases[1]:
        _, c, s = facts.objects[0]
        size = f"{SIZES[facts.objects[0][0]]} " if facts.objects[0][0] is not None else ""
        body = f"two {size}{COLOURS[c]} {PLURAL[SHAPES[s]]}"
    else:
        body = " and ".join(phrases)
    if facts.count is not None:
        noun = "shape" if facts.count == 1 else "shapes"
        body = (f"{NUMBERS[facts.count]} {noun} with {body}" if facts.count > len(phrases)
                else f"{NUMBERS[facts.count]} {noun}: {body}")
    if facts.background is not None:
        body += f" on {BACKGROUNDS[facts.background]}"
    return body


def captions(scenes: SceneSet, seed: int, rows=None) -> list[str]:
    rows = range(len(scenes)) if rows is None else rows
    return [caption_text(caption_facts(scenes, int(i), seed)) for i in rows]


def parse_caption(text: str) -> CaptionFacts | None:
    """Invert ``caption_text`` (the exact retriever reads captions through this); None if unparsable."""
    text = normalize_question(text)[:-1]  # same normalisation, without the '?'
    background = count = None
    m = re.fullmatch(r"(.*) on (\w+)", text)
    if m and m.group(2) in BACKGROUNDS:
        text, background = m.group(1), BACKGROUNDS.index(m.group(2))
    m = re.fullmatch(r"(\w+) shapes?(?: with|:) (.*)", text)
    if m and m.group(1) in NUMBERS:
        count, text = NUMBERS.index(m.group(1)), m.group(2)
    objects = []
    m = re.fullmatch(r"two (?:(small|large) )?(\w+) (\w+)", text)
    if m and m.group(2) in COLOURS and m.group(3) in PLURAL.values():
        size = SIZES.index(m.group(1)) if m.group(1) else None
        shape = list(PLURAL.values()).index(m.group(3))
        objects = [(size, COLOURS.index(m.group(2)), shape)] * 2
    else:
        for phrase in text.split(" and "):
            words = phrase.split()
            if len(words) not in (3, 4) or words[0] not in ("a", "an"):
                return None
            size = SIZES.index(words[1]) if len(words) == 4 and words[1] in SIZES else None
            if len(words) == 4 and size is None or words[-2] not in COLOURS or words[-1] not in SHAPES:
                return None
            objects.append((size, COLOURS.index(words[-2]), SHAPES.index(words[-1])))
    return CaptionFacts(tuple(objects), background, count)

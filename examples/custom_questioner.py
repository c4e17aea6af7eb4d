"""A questioner of your own: a keyword-driven questioner for the Shapes worlds.

Any class with these two methods plugs into the env, the eval runner and ``chatir benchmark``:

    reset(captions, pools=None)   # a batch of new episodes starts: one caption each; pools are the
                                  # questions each episode's world can answer (None: free text only)
    ask(observations)             # -> one question (str) per episode, or None to ask nothing

Both are batched: ``observations[i]`` is episode i's observation dict (``caption``, ``questions``,
``answers``: tuples padded with "", ``round``: turns played; the eval runner adds ``round_index``).
``chatir_env.spaces.observation_dialog(obs)`` turns one into a ``Dialog`` (``.caption``,
``.turns``, ``.questions``, ``.answers``). Keep per-episode state in ``reset`` if you need it; this
one needs none, since everything it uses is in the observation.

Name it in a benchmark config by import path, ``module:Class``; the module must be importable, so run
from the folder holding it, or put that folder on ``PYTHONPATH``::

    PYTHONPATH=examples chatir benchmark --config examples/custom_benchmark.yaml

The strategy: read the caption for what it already says (count, background, which colour+shape
objects, their sizes) and ask first about what it leaves out: where each named object is, whether
it is large, how many objects there are, the background, then what is in each grid cell. Only
questions from the world's pool are asked when a pool is given (the Shapes oracle answers its pool
and says "i don't know" to anything else).
"""

from __future__ import annotations

import re
from typing import Sequence

from chatir_env.spaces import observation_dialog

# The Shapes world's words (chatir_env.worlds.shapes_scenes holds the canonical lists).
COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "white", "black")
SHAPES = ("circle", "square", "triangle", "star", "heart", "cross")
BACKGROUNDS = ("grass", "sand", "water", "stone", "wood")
CELLS = ("center", "top left", "top right", "bottom left", "bottom right", "top", "bottom", "left", "right")
COUNT_WORDS = ("one", "two", "three", "four")


class KeywordShapesQuestioner:
    """Asks about what the caption leaves out, driven by keywords in it (see the module docstring).

    Args:
        ask_cells: also ask "what is in the <cell>?" once the caption-driven questions run out.
    """

    def __init__(self, ask_cells: bool = True):
        self.ask_cells = ask_cells
        self.pools: list[set[str]] | None = None

    def reset(self, captions: Sequence[str], pools: Sequence[Sequence[str]] | None = None) -> None:
        self.pools = [set(p) for p in pools] if pools is not None else None

    def candidates(self, caption: str) -> list[str]:
        """Questions worth asking about a scene with this caption, best first."""
        text = caption.lower()
        words = set(re.findall(r"[a-z]+", text))
        out: list[str] = []
        named = [s for s in SHAPES if s in words]
        for shape in named:
            out.append(f"where is the {shape}?")
        for shape in named:
            if not re.search(rf"\b(small|large) \w+ {shape}\b", text):
                out.append(f"is the {shape} large?")
        if not any(w in words for w in COUNT_WORDS[1:]) or "shapes" not in words:
            out.append("how many objects are there?")
        if not any(b in words for b in BACKGROUNDS):
            out.append("what is the background?")
        for colour in COLOURS:
            if colour in words:
                out.append(f"where is the {colour} object?")
        if self.ask_cells:
            out += [f"what is in the {cell}?" for cell in CELLS]
        return out

    def ask(self, observations: Sequence[dict]) -> list[str | None]:
        questions: list[str | None] = []
        for i, obs in enumerate(observations):
            dialog = observation_dialog(obs)
            asked = set(dialog.questions)
            pool = self.pools[i] if self.pools is not None else None
            options = [q for q in self.candidates(dialog.caption) if q not in asked and (pool is None or q in pool)]
            questions.append(options[0] if options else None)  # nothing left to ask: pass
        return questions

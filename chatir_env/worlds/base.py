"""A world: everything an episode needs besides the questioner.

A world bundles the corpus index, the retriever that built it, the answerer, and the targets with
their captions. Envs are views over a world; worlds are built once per process and shared.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..index import ImageIndex
from ..protocols import Answerer, Retriever


@dataclass
class World:
    """One retrieval setting (e.g. Shapes with the learned encoder, or VisDial with BLIP).

    Attributes:
        name: the world's name, as registered.
        retriever: encodes dialogs (and built ``index``).
        index: the encoded corpus; its fingerprint matches ``retriever.fingerprint``.
        answerer: answers questions about a target.
        targets: corpus ids that episodes may draw as targets (the benchmark's targets in order).
        captions: target id -> the caption an episode starts from.
        question_pool: target id -> the questions a pooled agent may ask (None: free text only).
        image: corpus id -> a PIL image, for contact sheets and people (None: not viewable).
        pool_answers: corpus ids -> ``int[len(ids), pool size]`` codes of the answer each corpus item
            would get to each pool question (equal codes = equal answers), for questioners that
            reason about the candidates (None: the world cannot say without asking).
        config: what built the world, recorded next to results.
    """

    name: str
    retriever: Retriever
    index: ImageIndex
    answerer: Answerer
    targets: Sequence[str]
    captions: Mapping[str, str]
    question_pool: Callable[[str], Sequence[str]] | None = None
    image: Callable[[str], Any] | None = None
    pool_answers: Callable[[Sequence[str]], Any] | None = None
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index.check_compatible(self.retriever.fingerprint)
        self.index.positions(self.targets)  # raises UnknownTargetError naming a target outside the corpus
        missing = [t for t in self.targets if t not in self.captions]
        if missing:
            raise ValueError(f"world {self.name!r}: targets without a caption, e.g. {missing[:3]}")


WorldBuilder = Callable[..., World]
_BUILDERS: dict[str, WorldBuilder] = {}


def register_world(name: str, builder: WorldBuilder) -> None:
    _BUILDERS[name] = builder


def world_names() -> list[str]:
    """The registered worlds' names, sorted."""
    return sorted(_BUILDERS)


def world_builder(name: str) -> WorldBuilder:
    """The function that builds world ``name``.

    Raises:
        UnknownWorldError: ``name`` is not registered (the message lists the registered worlds).
    """
    from ..config import UnknownWorldError

    if name not in _BUILDERS:
        raise UnknownWorldError("world", name, world_names())
    return _BUILDERS[name]


def world_parameters(name: str) -> dict[str, inspect.Parameter] | None:
    """World ``name``'s keyword arguments by name (None: its builder takes any keyword)."""
    parameters = inspect.signature(world_builder(name)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {k: p for k, p in parameters.items() if p.kind in named}


def check_world_args(name: str, kwargs: Mapping[str, Any], reserved: Sequence[str] = ()) -> None:
    """Raise a one-line error for an unknown world or an argument ``name``'s builder does not take.

    Args:
        name: a registered world name.
        kwargs: the arguments to check.
        reserved: arguments the caller sets itself, so not allowed in ``kwargs`` either.

    Raises:
        UnknownWorldError: ``name`` is not registered.
        UnknownArgumentError: an argument is not one of the builder's (a TypeError, as Python's own); the
            message lists the valid ones and suggests the closest.
    """
    from ..config import UnknownArgumentError

    parameters = world_parameters(name)
    if parameters is None:
        return
    valid = [k for k in parameters if k not in reserved]
    for key in kwargs:
        if key not in valid:
            raise UnknownArgumentError("argument", key, valid, where=f"world {name!r}")


def build_world(name: str, **kwargs) -> World:
    """Build a registered world by name (``shapes``, ``shapes_oracle``, ``visdial``, ...).

    Raises:
        UnknownWorldError: ``name`` is not registered.
        UnknownArgumentError: a keyword the world does not take (see :func:`check_world_args`).
    """
    check_world_args(name, kwargs)
    return _BUILDERS[name](**kwargs)

"""Questioners: baselines, the information-gain greedy questioner, and policy wrappers."""

from __future__ import annotations

import inspect
from typing import Any

from .base import CaptionOnlyQuestioner, FixedOrderQuestioner, RandomPoolQuestioner, ShapesTemplateQuestioner

# Short names a config may use instead of an import path.
QUESTIONERS: dict[str, str] = {
    "caption_only": "chatir_env.agents.base:CaptionOnlyQuestioner",
    "random": "chatir_env.agents.base:RandomPoolQuestioner",
    "fixed": "chatir_env.agents.base:FixedOrderQuestioner",
    "shapes_template": "chatir_env.agents.base:ShapesTemplateQuestioner",
    "lm": "chatir_env.agents.lm:LMQuestioner",
    "greedy_info_gain": "chatir_env.agents.greedy:GreedyInfoGainQuestioner",
    "policy": "chatir_env.agents.policy:PolicyQuestioner",
    "replay": "chatir_env.agents.replay:ReplayQuestioner",
    "llm": "chatir_env.agents.llm:LLMQuestioner",
    "generic": "chatir_env.agents.llm:GenericQuestioner",
}
IMPORT_PATH_NOTE = "(or an import path package.module:Class)"


def make_questioner(spec: str, **kwargs: Any):
    """A questioner from a short name or ``package.module:Class`` and its keyword arguments.

    Raises:
        UnknownNameError: ``spec`` is neither a short name (the message lists them, with the closest) nor
            an import path.
        UnknownArgumentError: a keyword argument the questioner does not take (the message lists those it
            takes).
        ConfigError: the import path cannot be imported, or the constructor refuses its arguments.
    """
    from ..config import ConfigError, UnknownArgumentError, UnknownNameError, import_object

    if ":" not in spec and spec not in QUESTIONERS:
        raise UnknownNameError("questioner", spec, QUESTIONERS, note=IMPORT_PATH_NOTE)
    cls = import_object(QUESTIONERS.get(spec, spec))
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # a builtin or C extension without a signature: let the call decide
        parameters = {}
    if parameters and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        valid = [k for k, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in kwargs:
            if key not in valid:
                raise UnknownArgumentError("argument", key, valid, where=f"questioner {spec!r}")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"questioner {spec!r}: {err}") from None


__all__ = ["CaptionOnlyQuestioner", "FixedOrderQuestioner", "RandomPoolQuestioner", "ShapesTemplateQuestioner",
           "QUESTIONERS", "make_questioner"]

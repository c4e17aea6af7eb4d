"""Questioners: baselines, the information-gain greedy questioner, and policy wrappers."""

from __future__ import annotations

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


def make_questioner(spec: str, **kwargs: Any):
    """A questioner from a short name or ``package.module:Class`` and its keyword arguments."""
    from ..config import ConfigError, import_object

    cls = import_object(QUESTIONERS.get(spec, spec))
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"questioner {spec!r}: {err}") from None


__all__ = ["CaptionOnlyQuestioner", "FixedOrderQuestioner", "RandomPoolQuestioner", "ShapesTemplateQuestioner",
           "QUESTIONERS", "make_questioner"]

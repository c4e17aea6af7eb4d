"""The retriever registry: a retriever from a short name (``blip``, ``clip``) or an import path ``module:attr``."""

from __future__ import annotations

import importlib
from typing import Any

NAMED_RETRIEVERS = {
    "blip": "chatir_env.retrievers.blip:BlipDialogRetriever",
    "clip": "chatir_env.retrievers.clip:ClipRetriever",
}


def load_retriever(spec: str, *, model: str | None = None, device: str | None = None, **kwargs: Any):
    """Build a retriever from a name (``blip``, ``clip``) or an import path ``module:attr``."""
    target = NAMED_RETRIEVERS.get(spec, spec)
    module_name, sep, attr = target.partition(":")
    if not sep or not attr:
        raise ValueError(
            f"retriever {spec!r} is neither a known name ({', '.join(NAMED_RETRIEVERS)}) nor an import path module:attr"
        )
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"retriever {spec!r}: cannot import {module_name} ({err})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"retriever {spec!r}: {module_name} has no attribute {attr!r}") from None
    if device is not None:
        kwargs["device"] = device
    if model is not None:
        if not hasattr(obj, "from_pretrained"):
            raise ValueError(f"retriever {spec!r} has no from_pretrained, so --model cannot be used with it")
        return obj.from_pretrained(model, **kwargs)
    if isinstance(obj, type) or callable(obj) and not hasattr(obj, "encode_images"):
        return obj(**kwargs)
    return obj

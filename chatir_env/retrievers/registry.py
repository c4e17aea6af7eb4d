"""The retriever registry: a retriever from a short name (``blip``, ``clip``) or an import path ``module:attr``."""

from __future__ import annotations

from typing import Any

from ..config import ConfigError, import_object

NAMED_RETRIEVERS = {
    "blip": "chatir_env.retrievers.blip:BlipDialogRetriever",
    "clip": "chatir_env.retrievers.clip:ClipRetriever",
}


def load_retriever(spec: str, *, model: str | None = None, device: str | None = None, **kwargs: Any):
    """Build a retriever from a name (``blip``, ``clip``) or an import path ``module:attr``."""
    target = NAMED_RETRIEVERS.get(spec, spec)
    if ":" not in target:
        raise ValueError(
            f"retriever {spec!r} is neither a known name ({', '.join(NAMED_RETRIEVERS)}) nor an import path module:attr"
        )
    try:
        obj = import_object(target)
    except ConfigError as err:
        raise ValueError(f"retriever {spec!r}: {err}") from None
    if device is not None:
        kwargs["device"] = device
    if model is not None:
        if not hasattr(obj, "from_pretrained"):
            raise ValueError(f"retriever {spec!r} has no from_pretrained, so --model cannot be used with it")
        return obj.from_pretrained(model, **kwargs)
    if isinstance(obj, type) or callable(obj) and not hasattr(obj, "encode_images"):
        return obj(**kwargs)
    return obj

"""Dialog-retrieval encoders (BLIP, CLIP) and the registry that builds one by name (``load_retriever``)."""

from .registry import NAMED_RETRIEVERS, load_retriever

__all__ = ["NAMED_RETRIEVERS", "load_retriever"]

"""An encoded corpus: embeddings on the retriever's device, their ids, and who made them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_write
from .metrics import ranks_from_scores, score_matrix, target_ranks

FORMAT_VERSION = 1


class IndexMismatchError(ValueError):
    """An index is used with a retriever other than the one that built it."""


CONTENT_HASH_KEY = "content_sha256"  # meta field: the sha256 of each image file's bytes, aligned with ids


class MissingContentHashesError(ValueError):
    """An index built without the images' content hashes (before ``chatir index`` recorded them)."""


class UnknownTargetError(KeyError):
    """A target id that is not in the corpus."""

    def __str__(self) -> str:  # KeyError quotes its message; this one reads as a sentence
        return str(self.args[0])


@dataclass
class ImageIndex:
    """Corpus embeddings ``[N, d]`` with their ids and the fingerprint of the model that made them."""

    embeddings: torch.Tensor
    ids: list[str]
    fingerprint: str
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2:
            raise ValueError(f"index embeddings must be [N, d], got {tuple(self.embeddings.shape)}")
        if len(self.ids) != self.embeddings.shape[0]:
            raise ValueError(f"index has {self.embeddings.shape[0]} embeddings but {len(self.ids)} ids")
        self._position = {image_id: i for i, image_id in enumerate(self.ids)}
        self._transposed: torch.Tensor | None = None
        if len(self._position) != len(self.ids):
            raise ValueError("index ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    def to(self, device: torch.device | str) -> "ImageIndex":
        return ImageIndex(self.embeddings.to(device), self.ids, self.fingerprint, dict(self.meta))

    def positions(self, ids: Sequence[str]) -> torch.Tensor:
        """Corpus positions of ``ids``; an unknown id is an error that names it."""
        try:
            return torch.tensor([self._position[i] for i in ids], dtype=torch.long)
        except KeyError as err:
            raise UnknownTargetError(
                f"target {err.args[0]!r} is not in the corpus ({len(self)} items, fingerprint {self.fingerprint})"
            ) from None

    def check_compatible(self, fingerprint: str) -> None:
        if fingerprint != self.fingerprint:
            source = self.meta.get("path", "this index")
            raise IndexMismatchError(
                f"{source} was built by model {self.fingerprint!r}, not by the retriever in use "
                f"({fingerprint!r}); rebuild it with `chatir index` for this retriever"
            )

    def content_hashes(self) -> dict[str, str]:
        """Image id -> sha256 of its file's bytes, as ``chatir index`` recorded them.

        Raises:
            MissingContentHashesError: the index predates content hashes (or was not built from
                image files); the message says how to add them.
        """
        hashes = self.meta.get(CONTENT_HASH_KEY)
        if not isinstance(hashes, list) or len(hashes) != len(self.ids):
            source = self.meta.get("path", "this index")
            raise MissingContentHashesError(
                f"{source} records no content hashes of its images (it was built by an older `chatir index`, or not "
                "from image files): add them without encoding again by rerunning the command that built it with "
                "--add-hashes (`chatir index --retriever ... --corpus <the same folder> [--search-space <the same list> | "
                f"--visdial-train <the same file>] --out {source} --add-hashes`), or rebuild it with --overwrite"
            )
        return dict(zip(self.ids, hashes))

    @staticmethod
    def read_content_hashes(path: str | os.PathLike) -> dict[str, str]:
        """:meth:`content_hashes` of a saved index, from its metadata alone (no embeddings loaded)."""
        tensor_path, meta_path = ImageIndex._paths(path)
        if not meta_path.is_file():
            raise FileNotFoundError(f"index metadata {meta_path} does not exist; build the index with `chatir index`")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"index metadata {meta_path} is not valid JSON ({err}); rebuild the index") from None
        ids = meta.get("ids") or []
        stub = ImageIndex(torch.zeros(len(ids), 1), list(ids), str(meta.get("fingerprint")),
                          {**meta.get("meta", {}), "path": str(tensor_path)})
        return stub.content_hashes()

    def transposed(self) -> torch.Tensor:
        """``embeddings.T``, contiguous, made once: sparse queries gather rows of it."""
        if self._transposed is None:
            self._transposed = self.embeddings.T.contiguous()
        return self._transposed

    def _sparse_helper(self, queries: torch.Tensor) -> torch.Tensor | None:
        # Only worth its memory for sparse queries (the exact Shapes scorer).
        return self.transposed() if (queries != 0).float().mean() < 0.25 else None

    def ranks(self, queries: torch.Tensor, target_positions: torch.Tensor) -> torch.Tensor:
        """0-based ranks of the targets for ``queries`` (see ``metrics.target_ranks``)."""
        queries = queries.to(self.embeddings.device, self.embeddings.dtype)
        return target_ranks(queries, self.embeddings, target_positions.to(self.embeddings.device),
                            corpus_t=self._sparse_helper(queries))

    def ranks_and_top_k(self, queries: torch.Tensor, target_positions: torch.Tensor, k: int):
        """Ranks and top-k from one score matrix: ``(ranks[Q], (scores[Q, k], positions[Q, k]))``.

        For small batches (an env step); ``ranks`` tiles large ones.
        """
        queries = queries.to(self.embeddings.device, self.embeddings.dtype)
        if not torch.isfinite(queries).all():
            return self.ranks(queries, target_positions), None  # raises, naming the rows
        scores = score_matrix(queries, self.embeddings, self._sparse_helper(queries))
        top = scores.topk(min(k, len(self)), dim=1)
        return ranks_from_scores(scores, target_positions.to(scores.device)), (top.values, top.indices)

    def top_k(self, queries: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, corpus positions) of the ``k`` best items per query, best first (``[Q, k]`` each)."""
        queries = queries.to(self.embeddings.device, self.embeddings.dtype)
        top = score_matrix(queries, self.embeddings, self._sparse_helper(queries)).topk(min(k, len(self)), dim=1)
        return top.values, top.indices

    # --- files: <path>.safetensors holds the tensor, <path>.json the ids and provenance -------------

    @staticmethod
    def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
        path = Path(path)
        stem = path.with_suffix("") if path.suffix in {".safetensors", ".json"} else path
        return stem.with_suffix(".safetensors"), stem.with_suffix(".json")

    def save(self, path: str | os.PathLike) -> Path:
        """Write both files atomically (temp file + rename): a crash leaves the old index or none."""
        tensor_path, meta_path = self._paths(path)
        tensor_path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "count": len(self.ids),
            "dim": self.dim,
            "dtype": str(self.embeddings.dtype).removeprefix("torch."),
            "ids": self.ids,
            "meta": {k: v for k, v in self.meta.items() if k != "path"},
        }
        atomic_write(
            tensor_path,
            lambda tmp: save_file(
                {"embeddings": self.embeddings.detach().cpu().contiguous()},
                tmp,
                metadata={"fingerprint": self.fingerprint, "count": str(len(self.ids))},
            ),
        )
        atomic_write(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta)))
        return tensor_path

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu", fingerprint: str | None = None) -> "ImageIndex":
        """Load an index; with ``fingerprint``, refuse one built by another model."""
        tensor_path, meta_path = cls._paths(path)
        for p in (tensor_path, meta_path):
            if not p.exists():
                raise FileNotFoundError(f"index file {p} does not exist; build it with `chatir index`")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"index metadata {meta_path} is not valid JSON ({err}); rebuild the index") from None
        for key in ("fingerprint", "ids", "count"):
            if key not in meta:
                raise ValueError(f"index metadata {meta_path} has no field {key!r}; rebuild the index")
        try:
            embeddings = load_file(str(tensor_path))["embeddings"]
        except (SafetensorError, OSError, KeyError, RuntimeError) as err:
            raise ValueError(f"index file {tensor_path} is corrupt or cut short ({err}); rebuild the index") from None
        if embeddings.shape[0] != meta["count"] or len(meta["ids"]) != meta["count"]:
            raise ValueError(
                f"index {tensor_path} holds {embeddings.shape[0]} embeddings and {len(meta['ids'])} ids "
                f"but its metadata says {meta['count']}; rebuild the index"
            )
        index = cls(embeddings.to(device), list(meta["ids"]), meta["fingerprint"],
                    {**meta.get("meta", {}), "path": str(tensor_path)})
        if fingerprint is not None:
            index.check_compatible(fingerprint)
        return index

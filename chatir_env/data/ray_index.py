"""`chatir index --engine ray`: the corpus encoded by a pool of retriever actors on Ray Data.

Only the encoding moves to Ray: :func:`ray_index_inputs` gives :func:`~chatir_env.data.index_cli.build_index`
a corpus whose images arrive already encoded (:class:`RayEncodedCorpus`) and a retriever that passes
those vectors through (:class:`EncodedRows`). ``build_index`` then does what it always does in this
process, the only writer: checkpoint shards, resume after an interruption, the lock, the skipped-image
report and the final index. An index built this way equals the single-process one, and a run
interrupted on one engine resumes on the other.

Each actor builds its own retriever from the command's ``--retriever``/``--model``/``--retriever-arg``
(on its GPU when it has one) and loads its images itself, skipping bad ones with the same reasons as
``ImageCorpus``. One probe task reads the retriever's fingerprint and width first, so shards of
another model are refused before any image is encoded; every returned batch carries its actor's
fingerprint, and one that differs stops the run before it is written.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from .images import ImageCorpus, ImageSkipped
from .index_cli import load_retriever, parse_retriever_args
from .ray_engine import RaySession, session_from_args


def _retriever_spec(args: argparse.Namespace) -> dict[str, Any]:
    return {"spec": args.retriever, "model": args.model, "device": args.device,
            "kwargs": parse_retriever_args(args.retriever_arg)}


def _build_retriever(spec: dict[str, Any]):
    return load_retriever(spec["spec"], model=spec["model"], device=spec["device"], **spec["kwargs"])


def _describe(spec: dict[str, Any]) -> tuple[str, int, str]:
    retriever = _build_retriever(spec)
    return str(retriever.fingerprint), int(retriever.dim), type(retriever).__name__


class EncodeActor:
    """One retriever per actor: loads and encodes a batch of corpus ids."""

    def __init__(self, spec: dict[str, Any], loader: ImageCorpus):
        self.retriever = _build_retriever(spec)
        self.fingerprint = str(self.retriever.fingerprint)
        self.dim = int(self.retriever.dim)
        self.loader = loader

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = [str(i) for i in batch["image_id"]]
        reasons = [""] * len(ids)
        images, rows = [], []
        for row, image_id in enumerate(ids):
            try:
                images.append(self.loader.load(image_id))
                rows.append(row)
            except ImageSkipped as err:
                reasons[row] = str(err) or "unusable"
        embeddings = np.zeros((len(ids), self.dim), dtype=np.float32)
        if images:
            with torch.no_grad():
                embeddings[rows] = self.retriever.encode_images(images).detach().float().cpu().numpy()
        return {
            "image_id": np.array(ids, dtype=object),
            "embedding": embeddings,
            "skipped": np.array(reasons, dtype=object),
            "fingerprint": np.array([self.fingerprint] * len(ids), dtype=object),
        }


class EncodedRows:
    """The retriever ``build_index`` sees: its "items" are vectors the actors already encoded."""

    def __init__(self, fingerprint: str, dim: int, name: str):
        self.fingerprint = fingerprint
        self.dim = dim
        self.name = name
        self.device = torch.device("cpu")

    def encode_images(self, items: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(items)) if items else torch.zeros(0, self.dim)


class RayEncodedCorpus:
    """A corpus whose ``iter_images`` yields ``(id, vector)`` encoded on Ray, skipping bad images into ``skipped``."""

    def __init__(self, corpus: ImageCorpus, session: RaySession, spec: dict[str, Any], fingerprint: str, *,
                 workers: int, batch_size: int):
        self.ids = list(corpus.ids)
        self.description = corpus.description
        self.skipped: list[tuple[str, str]] = []
        self.session = session
        self.spec = spec
        self.fingerprint = fingerprint
        self.workers = workers
        self.batch_size = batch_size
        # The actors need only the folder and the limits, not the id list.
        self.loader = ImageCorpus(corpus.root, [], max_bytes=corpus.max_bytes, max_pixels=corpus.max_pixels)

    def iter_images(self, ids: Iterable[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        import ray.data

        todo = list(self.ids if ids is None else ids)
        try:
            if not todo:
                return
            blocks = min(len(todo), max(self.workers, math.ceil(len(todo) / (4 * self.batch_size))))
            dataset = ray.data.from_items([{"image_id": i} for i in todo], override_num_blocks=blocks).map_batches(
                EncodeActor,
                fn_constructor_kwargs={"spec": self.spec, "loader": self.loader},
                batch_size=self.batch_size,
                batch_format="numpy",
                **self.session.actor_options(self.workers),
            )
            for out in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                stamps = {str(s) for s in out["fingerprint"]}
                if stamps != {self.fingerprint}:
                    from ..index import IndexMismatchError

                    raise IndexMismatchError(
                        f"a Ray worker encoded with {sorted(stamps)} but this index is for {self.fingerprint!r}: the workers "
                        "do not build the same retriever (different model files on different machines?)"
                    )
                embeddings = torch.from_numpy(np.asarray(out["embedding"], dtype=np.float32))
                for row, (image_id, reason) in enumerate(zip(out["image_id"], out["skipped"])):
                    if reason:
                        self.skipped.append((str(image_id), str(reason)))
                    else:
                        yield str(image_id), embeddings[row]
        finally:
            self.session.__exit__(None, None, None)


def ray_index_inputs(args: argparse.Namespace, corpus: ImageCorpus) -> tuple[EncodedRows, RayEncodedCorpus]:
    """The (retriever, corpus) pair that makes ``build_index`` encode on Ray.

    Starts Ray, shut down when the corpus has been read.
    """
    session = session_from_args(args).__enter__()
    try:
        spec = _retriever_spec(args)
        fingerprint, dim, name = session.probe(_describe, spec)
        # Named after the real retriever class: build_index records type(retriever).__name__ in the index.
        passthrough = type(name, (EncodedRows,), {})(fingerprint, dim, name)
        return passthrough, RayEncodedCorpus(corpus, session, spec, fingerprint,
                                                                     workers=args.workers, batch_size=args.batch_size)
    except BaseException:
        session.__exit__(None, None, None)
        raise

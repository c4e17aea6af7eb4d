"""`chatir answer --engine ray`: the missing (image, question) pairs answered by a pool of model actors.

The driver (the process running the command) reads the store, sends what it lacks through Ray
Data's ``map_batches`` to ``--workers`` actors (each builds its own answerer from the picklable
:class:`~chatir_env.data.answer_cli.AnswererSpec`, on its GPU when it has one), and commits every
batch that comes back: the driver is the store's only writer. Before anything is sent, one task
with an actor's resources builds the answerer to read its fingerprint, so a store of another
answerer is refused up front; every returned batch carries its actor's fingerprint and one that
differs stops the run before it is written.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Iterator, Sequence

import numpy as np

from .answer_cli import AnswererSpec, WorkItem, answer_batch, answerer_fingerprint, missing_work, report, write_answers
from .ray_engine import session_from_args


def _fingerprint_of(spec: AnswererSpec) -> str:
    return answerer_fingerprint(spec.build())


class AnswerActor:
    """One model per actor: answers a batch of (image_id, question, caption) rows."""

    def __init__(self, spec: AnswererSpec):
        self.answerer = spec.build()
        self.fingerprint = answerer_fingerprint(self.answerer)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [WorkItem(str(i), str(q), str(c)) for i, q, c in zip(batch["image_id"], batch["question"], batch["caption"])]
        answers = answer_batch(self.answerer, items)
        return {
            "image_id": np.array([i.image_id for i in items], dtype=object),
            "question": np.array([i.question for i in items], dtype=object),
            "answer": np.array(answers, dtype=object),
            "fingerprint": np.array([self.fingerprint] * len(items), dtype=object),
        }


def answer_on_ray(spec: AnswererSpec, items: Sequence[WorkItem], args: argparse.Namespace) -> dict[str, Any]:
    """Answer the items the store at ``args.store`` lacks on Ray Data; returns the run's counts."""
    from ..answer_store import AnswerStore

    with session_from_args(args) as session:
        fingerprint = session.probe(_fingerprint_of, spec)
        with AnswerStore(args.store, fingerprint) as store:
            missing = missing_work(store, items)
            todo = missing[: args.limit] if args.limit is not None else missing
            batches: Iterator = iter(())
            if todo:
                import pyarrow as pa
                import ray.data

                # Columns, not millions of row dicts; blocks of a few batches (at least one per actor), so each
                # finished block is committed soon after it is answered.
                table = pa.table({"image_id": [i.image_id for i in todo], "question": [i.question for i in todo],
                                  "caption": [i.caption for i in todo]})
                size = math.ceil(len(todo) / min(len(todo), max(args.workers, math.ceil(len(todo) / (4 * args.batch_size)))))
                blocks = [table.slice(start, size) for start in range(0, len(todo), size)]
                dataset = ray.data.from_arrow(blocks).map_batches(
                    AnswerActor,
                    fn_constructor_kwargs={"spec": spec},
                    batch_size=args.batch_size,
                    batch_format="numpy",
                    **session.actor_options(args.workers),
                )
                batches = _checked(dataset, fingerprint)
            stats = write_answers(store, batches, len(todo), progress=not args.no_progress)
            stats.update(pairs=len(items), already_stored=len(items) - len(missing), left=len(missing) - stats["answered"],
                         store_size=len(store), fingerprint=store.fingerprint, engine="ray", workers=args.workers)
    report(args.store, stats)
    return stats


def _checked(dataset: Any, fingerprint: str) -> Iterator[tuple[list[WorkItem], list[str]]]:
    for out in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        stamps = {str(s) for s in out["fingerprint"]}
        if stamps != {fingerprint}:
            from ..answer_store import AnswerStoreError

            raise AnswerStoreError(
                f"a Ray worker answered as {sorted(stamps)} but the store is for {fingerprint!r}: the workers do not "
                "build the same answerer (different model files or settings on different machines?)",
                reason="fingerprint_mismatch",
            )
        items = [WorkItem(str(i), str(q), "") for i, q in zip(out["image_id"], out["question"])]
        yield items, [str(a) for a in out["answer"]]

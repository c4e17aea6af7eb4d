r"""Fill an answer store: `chatir answer --world W --store PATH`, or import recorded answers with `--import`.

Answering: for every target of the world and every question of its pool, the (image, question) pairs
the store does not hold yet are answered in batches of ``--batch-size`` by the world's answerer (or
BLIP2 from ``--answerer-model``, or your own ``--answerer module:factory``), each batch committed
as one transaction. A progress bar shows answers/s. Interrupted (Ctrl-C, a killed job, a lost
machine): rerun the same command and it answers only what is still missing; nothing is answered
twice or lost. The answerer sees the target image, the question and the caption (a round-0
dialog), as ChatIR's BLIP2 did.

    chatir answer --world shapes_oracle --world-arg corpus_size=5000 --store answers.sqlite
    chatir answer --world visdial_train --answerer-model Salesforce/blip2-flan-t5-xxl \
        --answerer-arg dtype=bfloat16 --store blip2.sqlite --engine ray --workers 8

Importing: ``--import FILE`` (repeatable) stores the answers of released ChatIR dialog files
(``Human_BLIP2.json`` ...) under the fixed fingerprint ``chatir-release-blip2-v1``
(``VisDial_v1.0_queries_val.json``: ``visdial-human-v1``); the first file imported wins where two
disagree.

Past one GPU: ``--engine ray --workers N`` runs N model actors on Ray Data; this process stays the
store's only writer (see ``chatir_env.data.ray_engine``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .ray_engine import add_engine_arguments


@dataclass(frozen=True, slots=True)  # slots: a training set's work list holds millions of these
class WorkItem:
    """One (image, question) to answer; ``caption`` makes the round-0 dialog the answerer sees."""

    image_id: str
    question: str
    caption: str


@dataclass(frozen=True)
class AnswererSpec:
    """How to build the answerer, picklable so Ray actors can build their own copy.

    Attributes:
        world: a registered world name; its ``answerer`` is used unless ``model`` or ``factory`` is given.
        world_args: the world's keyword arguments.
        model: a BLIP2 directory or hub id: ``Blip2Answerer.from_pretrained(model, image_loader, **answerer_args)``.
        factory: an import path ``package.module:function`` called as ``function(world, **answerer_args)``.
        answerer_args: keyword arguments for the model or the factory (``dtype``, ``batch_size``, ...).
        images: the folder image ids are relative to, for ``model`` (default: the world's own images).
    """

    world: str
    world_args: dict = field(default_factory=dict)
    model: str | None = None
    factory: str | None = None
    answerer_args: dict = field(default_factory=dict)
    images: str | None = None

    def build_world(self):
        from ..worlds import build_world

        return build_world(self.world, **self.world_args)

    def build(self, world: Any = None):
        """The answerer (building the world when it needs one and none is given)."""
        if self.model is not None and self.factory is not None:
            raise ValueError("give --answerer-model or --answerer, not both")
        if self.factory is not None:
            return _import_attribute(self.factory)(world if world is not None else self.build_world(), **self.answerer_args)
        if self.model is not None:
            from ..answerers.blip2 import Blip2Answerer, images_from_root

            if self.images is not None:
                loader = images_from_root(self.images)
            else:
                world = world if world is not None else self.build_world()
                if world.image is None:
                    raise ValueError(f"world {self.world!r} cannot show its images; pass --images <folder>")
                loader = world.image
            return Blip2Answerer.from_pretrained(self.model, loader, **self.answerer_args)
        world = world if world is not None else self.build_world()
        if world.answerer is None:
            raise ValueError(f"world {self.world!r} has no answerer; pass --answerer-model or --answerer")
        return world.answerer


def _import_attribute(path: str):
    from ..config import ConfigError, import_object

    try:
        return import_object(path)
    except ConfigError as err:
        raise ValueError(f"--answerer: {err}") from None


def answerer_fingerprint(answerer: Any) -> str:
    fingerprint = getattr(answerer, "fingerprint", None)
    if not fingerprint:
        raise ValueError(
            f"{type(answerer).__name__} has no fingerprint, so its answers cannot be stored: give it a `fingerprint` "
            "attribute naming its model, prompt and generation settings"
        )
    return str(fingerprint)


# --- the work -------------------------------------------------------------------------------------


def world_work(world: Any, targets: Sequence[str] | None = None) -> list[WorkItem]:
    """Every (target, pool question) of ``world``, once per (target, normalised question), in target order."""
    from ..answer_store import normalize_question

    if world.question_pool is None:
        raise ValueError(f"world {world.name!r} has no question pools: there is nothing to answer ahead of time")
    items: list[WorkItem] = []
    for target in world.targets if targets is None else targets:
        seen: set[str] = set()
        caption = world.captions[target]
        for question in world.question_pool(target):
            key = normalize_question(question)
            if key not in seen:
                seen.add(key)
                items.append(WorkItem(target, question, caption))
    return items


def missing_work(store: Any, items: Sequence[WorkItem], chunk: int = 50_000) -> list[WorkItem]:
    """The items ``store`` holds no answer for (all of them when ``store`` is None)."""
    if store is None:
        return list(items)
    missing: list[WorkItem] = []
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        found = store.get_many([(item.image_id, item.question) for item in part])
        missing.extend(item for item, answer in zip(part, found) if answer is None)
    return missing


def batched(items: Sequence[WorkItem], size: int) -> Iterator[Sequence[WorkItem]]:
    if size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def answer_batch(answerer: Any, batch: Sequence[WorkItem]) -> list[str]:
    """The answerer's answers to one batch, each question asked in its target's round-0 dialog."""
    from ..dialog import Dialog

    answers = answerer.answer([i.image_id for i in batch], [Dialog(i.caption) for i in batch], [i.question for i in batch])
    if len(answers) != len(batch):
        raise ValueError(f"{type(answerer).__name__}.answer returned {len(answers)} answers for {len(batch)} questions")
    return [str(a) for a in answers]


def write_answers(store: Any, batches: Iterable[tuple[Sequence[WorkItem], Sequence[str]]], total: int,
                  progress: bool = True) -> dict[str, Any]:
    """Commit each (items, answers) batch as one transaction, with a progress bar; returns counts and rate."""
    bar = None
    if progress and total:
        from ..progress import progress as progress_bar

        bar = progress_bar(total=total, unit="ans", desc=f"answering into {Path(store.path).name}", smoothing=0.1)
    start = time.perf_counter()
    answered = added = 0
    try:
        for items, answers in batches:
            added += store.put_many([(i.image_id, i.question, a) for i, a in zip(items, answers)])
            answered += len(items)
            if bar is not None:
                bar.update(len(items))
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    rate = answered / seconds if seconds > 0 else None
    return {"answered": answered, "added": added, "seconds": seconds, "answers_per_s": rate}


def answer_locally(
    answerer: Any, store: Any, missing: Sequence[WorkItem], batch_size: int, progress: bool = True
) -> dict[str, Any]:
    """The single-process path: answer ``missing`` in batches, committing each batch."""
    return write_answers(store, ((batch, answer_batch(answerer, batch)) for batch in batched(missing, batch_size)),
                         len(missing), progress)


# --- the command ----------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="the answer store (an SQLite file; created if absent)")
    parser.add_argument("--import", dest="import_files", action="append", metavar="FILE",
                        help="import the answers of a released ChatIR dialog file (repeatable; first file wins)")
    parser.add_argument("--world", help="a registered world whose targets and question pools to answer")
    parser.add_argument("--world-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a world keyword argument (repeatable)")
    parser.add_argument("--answerer-model",
                        help="answer with BLIP2 from this HF directory or hub id instead of the world's answerer")
    parser.add_argument("--answerer", help="answer with package.module:function(world, **answerer args) instead")
    parser.add_argument("--answerer-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a keyword argument for the answerer, e.g. dtype=bfloat16, batch_size=32 (repeatable)")
    parser.add_argument("--images",
                        help="with --answerer-model: the folder image ids are relative to (default: the world's images)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="questions per batch; each batch is one committed transaction")
    parser.add_argument("--limit", type=int, help="answer at most this many missing questions in this run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_arguments(parser)


def _kv(pairs: Sequence[str] | None) -> dict[str, Any]:
    from .index_cli import parse_retriever_args

    return parse_retriever_args(pairs)


def spec_from_args(args: argparse.Namespace) -> AnswererSpec:
    return AnswererSpec(world=args.world, world_args=_kv(args.world_arg), model=args.answerer_model, factory=args.answerer,
                        answerer_args=_kv(args.answerer_arg), images=args.images)


def run_import(args: argparse.Namespace) -> int:
    from ..answer_store import AnswerStore, import_dialog_files, release_fingerprint

    kinds = {release_fingerprint(path) for path in args.import_files}
    if len(kinds) > 1:
        raise ValueError(
            "VisDial's human-answered queries and BLIP2-answered dialog files go to separate stores; import them separately"
        )
    with AnswerStore(args.store, kinds.pop()) as store:
        report = import_dialog_files(store, args.import_files)
        for name, counts in report.items():
            print(f"{name}: {counts['added']} answers added, {counts['kept_earlier']} already stored, "
                  f"{counts['unsplittable']} turns without a question/answer boundary left out")
        print(f"{store.path}: {len(store)} answers under {store.fingerprint!r}")
    return 0


def run_answer(args: argparse.Namespace) -> dict[str, Any]:
    """Answer what the store lacks; returns the run's counts (also printed)."""
    from ..answer_store import AnswerStore

    if not args.world:
        raise ValueError("give --world (and --world-arg ...) to answer its question pools, or --import FILE")
    spec = spec_from_args(args)
    world = spec.build_world()
    items = world_work(world)
    if args.engine == "ray":
        from .ray_answer import answer_on_ray

        return answer_on_ray(spec, items, args)
    answerer = spec.build(world)
    with AnswerStore(args.store, answerer_fingerprint(answerer)) as store:
        missing = missing_work(store, items)
        todo = missing[: args.limit] if args.limit is not None else missing
        stats = answer_locally(answerer, store, todo, args.batch_size, progress=not args.no_progress)
        stats.update(pairs=len(items), already_stored=len(items) - len(missing), left=len(missing) - stats["answered"],
                     store_size=len(store), fingerprint=store.fingerprint)
    report(args.store, stats)
    return stats


def report(path: str, stats: dict[str, Any]) -> None:
    rate = f", {stats['answers_per_s']:.1f} answers/s" if stats.get("answers_per_s") else ""
    print(f"{path}: answered {stats['answered']} of {stats['pairs']} (image, question) pairs in {stats['seconds']:.1f} s"
          f"{rate}; {stats['already_stored']} were already stored, {stats['left']} left; the store holds "
          f"{stats['store_size']} answers under {stats['fingerprint']!r}")


def run(args: argparse.Namespace) -> int:
    from ..answer_store import AnswerStoreError
    from .chatir_files import DialogFileError
    from .ray_engine import RayNotInstalledError

    try:
        if args.import_files:
            if args.world:
                raise ValueError("--import and --world are separate jobs: run one, then the other")
            return run_import(args)
        run_answer(args)
    except KeyError as err:  # an unknown world: build_world's message lists the registered ones
        print(f"chatir answer: {err.args[0] if err.args else err}", file=sys.stderr)
        return 1
    except (AnswerStoreError, DialogFileError, FileNotFoundError, RayNotInstalledError, ValueError) as err:
        print(f"chatir answer: {err}", file=sys.stderr)
        return 1
    return 0

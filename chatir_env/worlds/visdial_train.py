"""Training questioners in the paper's setting: ``ChatIR/VisDialTrain-v0`` and ``ChatIR/VisDialTrainReplay-v0``.

The VisDial worlds of :mod:`chatir_env.worlds.visdial` hold the 2,064 benchmark targets: a questioner
trained there is trained on the test set. These worlds hold VisDial v1.0 *train* instead:

* targets and captions: the dialogs of ``visdial_1.0_train.json`` (one per COCO 2014 image; corpus
  id = the image's path under the COCO root, ``train2014/COCO_train2014_<12 digits>.jpg`` or
  ``val2014/COCO_val2014_<12 digits>.jpg``);
* corpus: an index of those images built by ``chatir index --visdial-train`` with the episode's
  retriever (the BLIP dialog encoder by default, as the benchmark's);
* ``split``: ``"train"`` or ``"val"``, a seeded held-out slice of ``val_size`` targets for checkpoint
  selection (both rank the whole training corpus);
* question pool per target: its own human questions (10, in dialog order, each once), then with
  ``global_pool=N`` the N most frequent questions of the train split's dialogs not already among them;
* answers: from sources tried in order (``answer_sources``) until one answers: ``"store"`` (the
  answer store of ``chatir answer``, keyed by corpus id and question, under one answerer
  fingerprint), ``"human"`` (VisDial's recorded human answer: only for the target's own questions),
  ``"blip2"`` (BLIP2 looking at the image, written through to the store), ``"dont_know"`` ("i don't
  know"). Human and BLIP2 answers differ in style (VisDial's people write "yes, he is", "i think 2";
  BLIP2 "yes", "two"), and the benchmark is answered by BLIP2: a questioner trained on human answers
  sees another answerer at test time.

``visdial_train`` (``ChatIR/VisDialTrain-v0``) answers live with BLIP2 (default sources ``store``,
``blip2``) and needs the images and BLIP2 weights; ``visdial_train_replay``
(``ChatIR/VisDialTrainReplay-v0``) never runs BLIP2 and needs no images (default sources ``store``,
``human``, ``dont_know``): fill the store beforehand with ``chatir answer``.

Leakage guard: building either world refuses, naming the first offending images, when any image
of the training index (every target is one) has the same content (sha256 of the file's bytes, as
``chatir index`` records it) as an image of the benchmark's index (``benchmark_index``, the index
of the 50K search space). Skipping the check takes ``check_leakage=False``.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..answerers.recorded import UNKNOWN_ANSWER
from ..data.chatir_files import question_key
from ..data.visdial_train import COCO_2014_URLS, VISDIAL_DATA_PAGE, coco2014_in, load_visdial_train_cached
from ..dialog import Dialog
from ..index import ImageIndex
from ..protocols import check_answer_batch
from .base import World, register_world
from .visdial import GUIDE, VisDialSetupError, image_loader, make_blip2, make_retriever, pool_question

ANSWER_SOURCES = ("store", "human", "blip2", "dont_know")
LIVE_SOURCES = ("store", "blip2")
REPLAY_SOURCES = ("store", "human", "dont_know")
DEFAULT_VAL_SIZE = 2_000


class TrainingLeakageError(ValueError):
    """Training images that are also in the benchmark's search space (same file content)."""


class UnansweredQuestionError(KeyError):
    """No answer source answered a question."""

    def __str__(self) -> str:
        return str(self.args[0])


# --- answers ---------------------------------------------------------------------------------------


class SourcedAnswerer:
    """An :class:`~chatir_env.protocols.Answerer` that tries answer sources in order.

    Args:
        sources: names from ``ANSWER_SOURCES``, tried in this order for every question; each source
            answers the questions the earlier ones left, in one batch.
        store: an ``AnswerStore`` (for ``"store"``; BLIP2's answers are written to it when it is
            writable).
        human: target -> {``question_key``: [recorded answers, in dialog order]} (for ``"human"``;
            a question asked n times gets the n-th recorded answer, then the last).
        blip2: an answerer (for ``"blip2"``).
        fallback: the ``"dont_know"`` answer.

    ``answered_by`` counts the answers each source gave.

    Raises:
        UnansweredQuestionError: (from ``answer``) no source answered; names the target and question.
    """

    def __init__(self, sources: Sequence[str], *, store=None, human: dict | None = None, blip2=None,
                 fallback: str = UNKNOWN_ANSWER, write_through: bool = True):
        self.sources = tuple(sources)
        self.store, self.human, self.blip2 = store, human or {}, blip2
        self.fallback, self.write_through = fallback, write_through
        self.answered_by: Counter = Counter()

    def human_answer(self, target: str, dialog: Dialog | None, question: str) -> str | None:
        recorded = self.human.get(target, {}).get(question_key(question))
        if not recorded:
            return None
        asked_before = sum(question_key(q) == question_key(question) for q in (dialog.questions if dialog else ()))
        return recorded[min(asked_before, len(recorded) - 1)]

    def _from(self, source: str, targets, dialogs, questions) -> list[str | None]:
        if source == "store":
            return self.store.get_many(list(zip(targets, questions)))
        if source == "human":
            return [self.human_answer(t, d, q) for t, d, q in zip(targets, dialogs, questions)]
        if source == "blip2":
            answers = list(self.blip2.answer(list(targets), list(dialogs), list(questions)))
            if self.store is not None and self.write_through:
                self.store.put_many(list(zip(targets, questions, answers)))
            return answers
        return [self.fallback] * len(targets)

    def answer(self, targets: Sequence[str], dialogs: Sequence[Dialog], questions: Sequence[str]) -> list[str]:
        check_answer_batch(targets, dialogs, questions)
        answers: list[str | None] = [None] * len(targets)
        pending = list(range(len(targets)))
        for source in self.sources:
            if not pending:
                break
            found = self._from(source, [targets[i] for i in pending], [dialogs[i] for i in pending],
                               [questions[i] for i in pending])
            for i, answer in zip(pending, found):
                if answer is not None:
                    answers[i] = answer
                    self.answered_by[source] += 1
            pending = [i for i in pending if answers[i] is None]
        if pending:
            i = pending[0]
            raise UnansweredQuestionError(
                f"no answer source ({', '.join(self.sources)}) answered {questions[i]!r} about {targets[i]!r} "
                f"({len(pending)} questions of this batch unanswered): fill the store with `chatir answer`, or add "
                "'dont_know' to answer_sources"
            )
        return answers  # type: ignore[return-value]


# --- the pieces ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _load_index_cached(path: str, mtime: float, device: str, fingerprint: str) -> ImageIndex:
    return ImageIndex.load(path, device=device, fingerprint=fingerprint)


def _index_command(train_file: Any) -> str:
    return (f"`chatir index --retriever blip --model <retriever model> --corpus <COCO 2014 root holding train2014/ and "
            f"val2014/> --visdial-train {train_file} --out <index path>` (the same retriever as this world's; see {GUIDE})")


def load_training_index(index: Any, retriever: Any, train_file: Any) -> ImageIndex:
    """The training corpus: a ``chatir index --visdial-train`` output made by ``retriever``."""
    if isinstance(index, ImageIndex):
        index.check_compatible(str(retriever.fingerprint))
        return index
    if index is None:
        raise VisDialSetupError(
            f"no index of the training images given: pass index=<path>; build it with {_index_command(train_file)}")
    tensor_path, meta_path = ImageIndex._paths(index)
    if not tensor_path.is_file() or not meta_path.is_file():
        raise VisDialSetupError(
            f"index {tensor_path} (and {meta_path.name}) not found; build it with {_index_command(train_file)}")
    return _load_index_cached(str(tensor_path), tensor_path.stat().st_mtime, str(getattr(retriever, "device", "cpu")),
                              str(retriever.fingerprint))


@functools.lru_cache(maxsize=2)
def _benchmark_hashes(path: str, mtime: float) -> dict[str, str]:
    return ImageIndex.read_content_hashes(path)


def check_no_leakage(training: ImageIndex, benchmark_index: Any, shown: int = 5) -> None:
    """Refuse training images whose content (sha256 of the file) is also in the benchmark index.

    Raises:
        TrainingLeakageError: names the first ``shown`` training images and their benchmark twins.
        MissingContentHashesError: either index was built without content hashes.
    """
    train_hashes = training.content_hashes()
    if isinstance(benchmark_index, ImageIndex):
        bench = benchmark_index.content_hashes()
    else:
        _, meta_path = ImageIndex._paths(benchmark_index)
        if not meta_path.is_file():
            raise VisDialSetupError(f"benchmark index {meta_path} not found: pass the `chatir index` output over the "
                                    f"search space (Search_Space_val_50k.json) as benchmark_index (see {GUIDE})")
        bench = _benchmark_hashes(str(meta_path), meta_path.stat().st_mtime)
    by_hash = {digest: image_id for image_id, digest in bench.items()}
    twins = [(image_id, by_hash[digest], digest) for image_id, digest in train_hashes.items() if digest in by_hash]
    if twins:
        listed = "; ".join(f"{t} = benchmark {b} (sha256 {d[:12]}...)" for t, b, d in twins[:shown])
        raise TrainingLeakageError(
            f"{len(twins)} images of the training index {training.meta.get('path', '')} are also in the benchmark's "
            f"search space: {listed}. Remove them from the training images and rebuild the training index"
        )


def _split_targets(records: dict[str, Dialog], index: ImageIndex, split: str, val_size: int, seed: int,
                   missing_targets: str, index_name: str) -> tuple[list[str], list[str]]:
    """(train targets in file order, val targets in a seeded random order)."""
    if missing_targets not in ("error", "skip"):
        raise ValueError(f"missing_targets must be 'error' or 'skip', got {missing_targets!r}")
    known = set(index.ids)
    missing = [t for t in records if t not in known]
    if missing and missing_targets == "error":
        raise VisDialSetupError(
            f"{len(missing)} of the {len(records)} training dialogs' images are not in the index {index_name} "
            f"({len(index)} images), e.g. {missing[:3]}: index them (a skipped image is listed in <index>.skipped.json), "
            "or pass missing_targets='skip' to leave those dialogs out"
        )
    usable = [t for t in records if t in known]
    if not 0 < val_size < len(usable):
        raise ValueError(f"val_size must be between 1 and {len(usable) - 1} (the usable training dialogs), got {val_size}")
    order = np.random.default_rng(seed).permutation(len(usable))
    val = [usable[i] for i in order[:val_size]]
    held = set(val)
    return [t for t in usable if t not in held], val


@functools.lru_cache(maxsize=1 << 20)
def _key(question: str) -> str:
    # VisDial train asks ~376K distinct questions in 1.2M turns: match each string once.
    return question_key(question)


@functools.lru_cache(maxsize=1 << 20)
def _pool_form(question: str) -> str:
    return pool_question(question)


def most_frequent_questions(dialogs: Sequence[Dialog], n: int) -> list[str]:
    """The ``n`` most frequent questions, each as first written.

    Questions are matched by ``question_key``; ties: first asked first.
    """
    counts: Counter = Counter()
    first: dict[str, str] = {}
    for dialog in dialogs:
        for question in dialog.questions:
            key = _key(question)
            counts[key] += 1
            if key not in first:
                first[key] = _pool_form(question)
    return _top(counts, first, n)


def _top(counts: Counter, first: dict[str, str], n: int) -> list[str]:
    order = {key: i for i, key in enumerate(first)}
    top = sorted((k for k in counts if counts[k] > 0), key=lambda k: (-counts[k], order[k]))[:n]
    return [first[k] for k in top]


def own_questions(dialog: Dialog) -> list[str]:
    """A dialog's questions, each once (by ``question_key``), as a pool offers them."""
    seen: dict[str, str] = {}
    for question in dialog.questions:
        key = _key(question)
        if key not in seen:
            seen[key] = _pool_form(question)
    return list(seen.values())


class TrainingDialogs:
    """VisDial train's dialogs keyed by corpus id, with what every world over them needs, made once.

    Attributes:
        records: corpus id -> ``Dialog`` (file order; an image's first dialog).
        own: corpus id -> its own questions, each once, as pools offer them.
        counts: ``question_key`` -> how often all dialogs ask it; ``first``: its first written form.
    """

    def __init__(self, records: dict[str, Dialog]):
        self.records = records
        self.own = {t: tuple(own_questions(d)) for t, d in records.items()}
        self.counts: Counter = Counter()
        self.first: dict[str, str] = {}
        for dialog in records.values():
            for question in dialog.questions:
                key = _key(question)
                self.counts[key] += 1
                if key not in self.first:
                    self.first[key] = _pool_form(question)
        self._human: dict[str, dict[str, list[str]]] | None = None

    def most_frequent(self, n: int, leave_out: Sequence[str] = ()) -> list[str]:
        """The ``n`` most frequent questions of all dialogs but those of ``leave_out`` (corpus ids)."""
        counts = Counter(self.counts)
        for target in leave_out:
            for question in self.records[target].questions:
                counts[_key(question)] -= 1
        return _top(counts, self.first, n)

    @property
    def human(self) -> dict[str, dict[str, list[str]]]:
        """Corpus id -> {``question_key``: its recorded answers in dialog order} (built on first use)."""
        if self._human is None:
            self._human = {}
            for target, dialog in self.records.items():
                table: dict[str, list[str]] = {}
                for question, answer in dialog.turns:
                    table.setdefault(_key(question), []).append(answer)
                self._human[target] = table
        return self._human


# The last two (train file, index) pairs: a training world and its validation world.
_PREPARED: dict[tuple, TrainingDialogs] = {}


def training_dialogs(train_file: str | os.PathLike, index: ImageIndex) -> TrainingDialogs:
    """The :class:`TrainingDialogs` of ``train_file`` over ``index``'s ids, made once per process."""
    path = Path(train_file)
    key = (str(path.resolve()), path.stat().st_mtime, index.meta.get("path") or id(index), index.fingerprint, len(index))
    if key not in _PREPARED:
        to_id = coco2014_in(index.ids)
        records: dict[str, Dialog] = {}
        for image_id, dialog in load_visdial_train_cached(path):
            records.setdefault(to_id(image_id), dialog)
        while len(_PREPARED) >= 2:
            _PREPARED.pop(next(iter(_PREPARED)))
        _PREPARED[key] = TrainingDialogs(records)
    return _PREPARED[key]


def _open_store(answer_store: Any, fingerprint: str | None, readonly: bool, answerer: Any):
    """An ``AnswerStore`` from a path.

    Opened under ``fingerprint``, else the live answerer's, else (read-only) the one the store was written under.
    """
    from ..answer_store import AnswerStore, read_fingerprint

    if not isinstance(answer_store, (str, os.PathLike)):
        return answer_store
    if readonly and not Path(answer_store).is_file():
        raise VisDialSetupError(f"answer store {answer_store} not found: fill it with `chatir answer` (see {GUIDE})")
    fingerprint = (fingerprint or getattr(answerer, "fingerprint", None)
                   or (read_fingerprint(answer_store) if readonly else None))
    if not fingerprint:
        raise ValueError(
            f"answer store {answer_store}: pass store_fingerprint=<the answerer fingerprint to keep its answers under> "
            "(one store holds one answerer's answers)"
        )
    return AnswerStore(answer_store, str(fingerprint), readonly=readonly)


# --- the worlds ------------------------------------------------------------------------------------


def _build(
    name: str,
    live: bool,
    train_file: str | os.PathLike | None,
    index: Any,
    retriever: Any,
    retriever_model: Any,
    device: str | None,
    dtype: str | None,
    tokenizer: Any,
    retriever_args: dict | None,
    split: str,
    val_size: int,
    split_seed: int,
    num_targets: int | None,
    missing_targets: str,
    global_pool: int,
    max_pool: int | None,
    answer_sources: Sequence[str] | None,
    answer_store: Any,
    store_fingerprint: str | None,
    benchmark_index: Any,
    check_leakage: bool,
    image_root: Any = None,
    blip2_model: Any = None,
    answerer: Any = None,
    answer_batch_size: int = 16,
    prompt: str | None = None,
) -> World:
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    sources = tuple(answer_sources or (LIVE_SOURCES if live else REPLAY_SOURCES))
    unknown = [s for s in sources if s not in ANSWER_SOURCES]
    if unknown or len(set(sources)) != len(sources):
        raise ValueError(f"answer_sources must be distinct names from {', '.join(ANSWER_SOURCES)}, got {list(sources)}")
    if not live and "blip2" in sources:
        raise ValueError(f"world {name!r} never runs BLIP2 (answer_sources {list(sources)}): fill the answer store with "
                         "`chatir answer`, or use ChatIR/VisDialTrain-v0 (world 'visdial_train') for live answers")
    if "store" in sources and answer_store is None:
        raise ValueError(f"answer_sources names 'store' but no answer_store was given: pass answer_store=<path> "
                         f"(filled by `chatir answer`) or leave 'store' out of answer_sources {list(sources)}")
    if global_pool < 0:
        raise ValueError(f"global_pool must be >= 0, got {global_pool}")
    if train_file is None or not Path(train_file).is_file():
        raise VisDialSetupError(
            f"VisDial v1.0 train dialogs not found{f' at {train_file}' if train_file else ''}: download visdial_1.0_train.zip "
            f"from {VISDIAL_DATA_PAGE}, unzip it and pass train_file=<path of visdial_1.0_train.json> (see {GUIDE})"
        )

    ret = make_retriever(retriever, retriever_model, device, dtype, tokenizer, retriever_args)
    idx = load_training_index(index, ret, train_file)
    if check_leakage:
        if benchmark_index is None:
            raise VisDialSetupError(
                "the leakage guard needs the benchmark's index: pass benchmark_index=<the `chatir index` output over "
                f"Search_Space_val_50k.json> (any retriever; only its content hashes are read), or check_leakage=False "
                f"(see {GUIDE})"
            )
        check_no_leakage(idx, benchmark_index)

    data = training_dialogs(train_file, idx)
    records = data.records
    index_name = str(idx.meta.get("path", index))
    train_targets, val_targets = _split_targets(records, idx, split, val_size, split_seed, missing_targets, index_name)
    targets = train_targets if split == "train" else val_targets
    if num_targets is not None:
        if num_targets < 1:
            raise ValueError(f"num_targets must be at least 1 (or None for all), got {num_targets}")
        targets = targets[:num_targets]

    # shared questions: the most frequent of the train split (the validation slice's dialogs left out)
    shared = data.most_frequent(global_pool, leave_out=val_targets) if global_pool else []
    shared_keys = [_key(q) for q in shared]

    def pool(target: str) -> list[str]:
        own = data.own[target]
        own_keys = {_key(q) for q in own}
        return list(own) + [q for q, k in zip(shared, shared_keys) if k not in own_keys]

    largest = max(data.own, key=lambda t: len(data.own[t]))
    needed = len(data.own[largest]) + len(shared)
    if max_pool is not None and max_pool < needed:
        raise ValueError(f"max_pool={max_pool} is smaller than the largest pool (that of {largest!r}: its "
                         f"{len(data.own[largest])} questions and up to {len(shared)} shared ones); "
                         f"pass max_pool >= {needed} or None")
    max_pool = max_pool or needed

    blip2 = None
    images = image_loader(image_root, targets, required=live and "blip2" in sources and answerer is None,
                          holds="train2014/ and val2014/", download=" and ".join(COCO_2014_URLS))
    if "blip2" in sources:
        blip2 = (answerer if answerer is not None
                 else make_blip2(blip2_model, image_root, device, dtype, answer_batch_size, prompt))
    store = None
    if answer_store is not None:
        store = _open_store(answer_store, store_fingerprint, readonly=not live, answerer=blip2)
        live_fingerprint = getattr(blip2, "fingerprint", None)
        if live_fingerprint is not None and str(live_fingerprint) != str(store.fingerprint):
            raise ValueError(f"answer store {getattr(store, 'path', answer_store)} keeps answers of "
                             f"{store.fingerprint!r}, but "
                             f"the BLIP2 answerer in use is {live_fingerprint!r}: its answers would be mixed in under the "
                             "store's fingerprint; use one store per answerer")
    answer = SourcedAnswerer(sources, store=store, human=data.human if "human" in sources else None, blip2=blip2,
                             write_through=live)

    return World(
        name=name,
        retriever=ret,
        index=idx,
        answerer=answer,
        targets=targets,
        captions={t: records[t].caption for t in targets},
        question_pool=pool,
        image=images,
        config={"world": name, "train_file": str(train_file), "index": index_name,
                "retriever": retriever if isinstance(retriever, str) else type(retriever).__name__,
                "retriever_model": None if retriever_model is None else str(retriever_model),
                "fingerprint": idx.fingerprint, "split": split, "val_size": val_size, "split_seed": split_seed,
                "num_targets": num_targets, "targets": len(targets), "corpus_size": len(idx),
                "global_pool": global_pool, "max_pool": max_pool, "answer_sources": list(sources),
                "answer_store": None if answer_store is None else str(getattr(answer_store, "path", answer_store)),
                "benchmark_index": (None if benchmark_index is None
                                    else str(getattr(benchmark_index, "meta", {}).get("path", benchmark_index))),
                "check_leakage": check_leakage,
                "blip2_model": None if blip2_model is None else str(blip2_model)},
    )


def build_visdial_train_world(
    train_file: str | os.PathLike | None = None,
    index: str | os.PathLike | ImageIndex | None = None,
    retriever: Any = "blip",
    retriever_model: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    blip2_model: str | os.PathLike | None = None,
    answer_store: Any = None,
    store_fingerprint: str | None = None,
    answer_sources: Sequence[str] | None = None,
    benchmark_index: str | os.PathLike | ImageIndex | None = None,
    check_leakage: bool = True,
    split: str = "train",
    val_size: int = DEFAULT_VAL_SIZE,
    split_seed: int = 0,
    num_targets: int | None = None,
    missing_targets: str = "error",
    global_pool: int = 0,
    max_pool: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    retriever_args: dict | None = None,
    answerer: Any = None,
    answer_batch_size: int = 16,
    prompt: str | None = None,
) -> World:
    """``ChatIR/VisDialTrain-v0``: VisDial train targets, answered live by BLIP2 through the answer store.

    Args:
        train_file: ``visdial_1.0_train.json``.
        index: ``chatir index --visdial-train`` output over the COCO 2014 images, made by ``retriever``.
        retriever: ``"blip"`` (default), ``"clip"``, an import path ``module:Name``, or a retriever.
        retriever_model: BLIP: ChatIR's ``chatir_weights.ckpt`` or an HF directory; CLIP: an HF
            directory; an import path: passed to its ``from_pretrained``.
        device: torch device of the models (``None``: CUDA when available).
        dtype: their dtype (``None``: float32; ``float16`` halves GPU memory, and the index must then be
            built at the same precision).
        tokenizer: the BERT tokenizer for an original BLIP checkpoint (default: the hub's).
        retriever_args: further keyword arguments of the retriever's loader.
        image_root: the COCO 2014 root (``train2014/``, ``val2014/``): BLIP2 looks at the targets.
        blip2_model: an HF BLIP2 directory (the benchmark's: ``Salesforce/blip2-flan-t5-xxl``).
        answer_store: an answer store path (or object): read first, BLIP2's answers written through.
        store_fingerprint: the answerer fingerprint the store is keyed by (default: the BLIP2
            answerer's ``fingerprint``; the replay world: the one the store was written under).
        answer_sources: the order answers are looked for (default ``["store", "blip2"]``; names:
            ``store``, ``human``, ``blip2``, ``dont_know``).
        benchmark_index: the index of the benchmark's search space, for the leakage guard.
        check_leakage: False skips the guard (then nothing stops training on benchmark images).
        split: ``"train"``, or ``"val"`` for the held-out slice (checkpoint selection).
        val_size: targets held out as the ``"val"`` split, never trained on.
        split_seed: seed of the draw of the held-out slice.
        num_targets: the first n targets of the split (None: all).
        missing_targets: ``"error"`` or ``"skip"`` for dialogs whose image the index lacks.
        global_pool: add the N most frequent training questions to every target's pool.
        max_pool: the pool size agents see (default: the largest pool); e.g. 40 to match the
            benchmark world ``ChatIR/VisDialReplay-v0``.
        answerer: a ready answerer in place of BLIP2 (no weights needed).
        answer_batch_size: (image, question) pairs BLIP2 answers in one batch.
        prompt: BLIP2's prompt template (default: the benchmark's VQA prompt).

    Raises:
        VisDialSetupError: a file, index or model is missing (the message says what to fetch).
        TrainingLeakageError: training images are also benchmark images.
        MissingContentHashesError: an index without content hashes (says how to add them).
    """
    return _build("visdial_train", True, train_file, index, retriever, retriever_model, device, dtype, tokenizer,
                  retriever_args, split, val_size, split_seed, num_targets, missing_targets, global_pool, max_pool,
                  answer_sources, answer_store, store_fingerprint, benchmark_index, check_leakage, image_root,
                  blip2_model, answerer, answer_batch_size, prompt)


def build_visdial_train_replay_world(
    train_file: str | os.PathLike | None = None,
    index: str | os.PathLike | ImageIndex | None = None,
    retriever: Any = "blip",
    retriever_model: str | os.PathLike | None = None,
    answer_store: Any = None,
    store_fingerprint: str | None = None,
    answer_sources: Sequence[str] | None = None,
    benchmark_index: str | os.PathLike | ImageIndex | None = None,
    check_leakage: bool = True,
    split: str = "train",
    val_size: int = DEFAULT_VAL_SIZE,
    split_seed: int = 0,
    num_targets: int | None = None,
    missing_targets: str = "error",
    global_pool: int = 0,
    max_pool: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    retriever_args: dict | None = None,
    image_root: str | os.PathLike | None = None,
) -> World:
    """``ChatIR/VisDialTrainReplay-v0``: the same targets and pools, answered without BLIP2 or images.

    Answers come from the answer store (opened read-only) and VisDial's human answers; ``blip2`` is
    refused as an answer source.

    Args:
        train_file: ``visdial_1.0_train.json``.
        index: ``chatir index --visdial-train`` output over the COCO 2014 images, made by ``retriever``.
        retriever: ``"blip"`` (default), ``"clip"``, an import path ``module:Name``, or a retriever.
        retriever_model: BLIP: ChatIR's ``chatir_weights.ckpt`` or an HF directory; CLIP: an HF
            directory; an import path: passed to its ``from_pretrained``.
        device: torch device of the models (``None``: CUDA when available).
        dtype: their dtype (``None``: float32; ``float16`` halves GPU memory, and the index must then be
            built at the same precision).
        tokenizer: the BERT tokenizer for an original BLIP checkpoint (default: the hub's).
        retriever_args: further keyword arguments of the retriever's loader.
        answer_store: an answer store path (or object), opened read-only.
        store_fingerprint: the answerer fingerprint the store must carry (default: the one it was
            written under).
        answer_sources: the order answers are looked for (default ``["store", "human", "dont_know"]``).
        benchmark_index: the index of the benchmark's search space, for the leakage guard.
        check_leakage: False skips the guard (then nothing stops training on benchmark images).
        split: ``"train"``, or ``"val"`` for the held-out slice (checkpoint selection).
        val_size: targets held out as the ``"val"`` split, never trained on.
        split_seed: seed of the draw of the held-out slice.
        num_targets: the first n targets of the split (None: all).
        missing_targets: ``"error"`` or ``"skip"`` for dialogs whose image the index lacks.
        global_pool: add the N most frequent training questions to every target's pool.
        max_pool: the pool size agents see (default: the largest pool).
        image_root: the COCO 2014 root, optional (for viewing only).
    """
    return _build("visdial_train_replay", False, train_file, index, retriever, retriever_model, device, dtype, tokenizer,
                  retriever_args, split, val_size, split_seed, num_targets, missing_targets, global_pool, max_pool,
                  answer_sources, answer_store, store_fingerprint, benchmark_index, check_leakage, image_root)


register_world("visdial_train", build_visdial_train_world)
register_world("visdial_train_replay", build_visdial_train_replay_world)

"""A persistent answer store: one answer per (image id, normalised question), under one answerer.

BLIP2 answers are the cost of training questioners in the paper's setting; the store keeps every
answer ever generated so each (image, question) is answered once. It is an SQLite file (the standard
library's ``sqlite3``):

* ``meta`` holds the answerer **fingerprint** (model, prompt and generation settings; see
  ``Blip2Answerer.fingerprint``) and the schema version. A store answers for exactly one answerer:
  opening it under another fingerprint raises :class:`AnswerStoreMismatchError` naming both, so
  answers of two models are never mixed.
* ``answers(image_id, question, answer)`` with the key ``(image_id, question)``; ``question`` is
  :func:`normalize_question` of the asked text.

Writes: WAL journal, ``synchronous=FULL``; each :meth:`AnswerStore.put_many` is one transaction, so
a process killed mid-write loses nothing already committed and leaves no partial batch (SQLite
rolls the unfinished transaction back on the next open). One writer at a time (SQLite serialises
writers; ``chatir answer``'s driver is the only writer of a job) and any number of readers, in other
processes too (a ``readonly`` store never writes). Re-putting a key keeps the first answer.

Recorded answers: ChatIR's released BLIP2 answers import under :data:`CHATIR_RELEASE_FINGERPRINT`
(``chatir answer --import``, see :func:`import_dialog_files`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable, Sequence

from .dialog import Dialog
from .protocols import check_answer_batch

__all__ = [
    "AnswerStore",
    "AnswerStoreError",
    "AnswerStoreMismatchError",
    "CHATIR_RELEASE_FINGERPRINT",
    "SCHEMA_VERSION",
    "StoreAnswerer",
    "import_dialog_files",
    "normalize_question",
    "read_fingerprint",
    "recorded_rows",
    "release_fingerprint",
    "VISDIAL_HUMAN_FINGERPRINT",
]

SCHEMA_VERSION = "1"

CHATIR_RELEASE_FINGERPRINT = "chatir-release-blip2-v1"
"""The fingerprint of the BLIP2 answers recorded in ChatIR's released dialog files
(``ChatGPT_BLIP2.json``, ``FLAN_ALPACA_XXL_BLIP2.json``, ``Human_BLIP2.json``,
``Unanswered_ChatGPT_BLIP2.json``). Those answers were generated once by the authors; no model here
reproduces them, so they carry this fixed name instead of a weights digest."""

VISDIAL_HUMAN_FINGERPRINT = "visdial-human-v1"
"""The fingerprint for VisDial's human answers (``VisDial_v1.0_queries_val.json``): people, not BLIP2,
answered them, so they never share a store with BLIP2's."""

# Rows per SELECT: two bound variables per key stays under SQLite's oldest limit of 999 variables.
_KEYS_PER_QUERY = 400
_BUSY_TIMEOUT_MS = 60_000


def normalize_question(question: str) -> str:
    r"""How the store matches questions: lower-cased, runs of whitespace made one space, stripped.

    ``"Is it  sunny?\n"`` and ``"is it sunny?"`` are one question; punctuation is kept, so
    ``"is it sunny"`` is another.
    """
    return " ".join(question.split()).lower()


class AnswerStoreError(ValueError):
    """A store that cannot be used as asked.

    ``reason`` says why, for programs:

    ``"missing"`` (no store at the path, opened read-only), ``"not_a_store"`` (the file is not an
    answer store), ``"schema"`` (written by another schema version), ``"fingerprint_mismatch"``
    (see :class:`AnswerStoreMismatchError`), ``"readonly"`` (a write to a read-only store),
    ``"unanswered"`` (a :class:`StoreAnswerer` without an inner answerer met a question the store
    lacks), ``"bad_row"`` (a row that is not three strings).
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class AnswerStoreMismatchError(AnswerStoreError):
    """The store was written under another answerer fingerprint; ``stored`` and ``requested`` name both."""

    def __init__(self, path: str | os.PathLike, stored: str, requested: str):
        self.path = Path(path)
        self.stored = stored
        self.requested = requested
        super().__init__(
            f"answer store {self.path} holds answers of answerer {stored!r}, not of {requested!r}; "
            "use another store file for this answerer (answers of two answerers are never mixed)",
            reason="fingerprint_mismatch",
        )


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    uri = f"{path.resolve().as_uri()}?mode={'ro' if readonly else 'rwc'}"
    # isolation_level=None: transactions are opened explicitly (BEGIN IMMEDIATE) around each batch.
    # check_same_thread=False: a store may be shared by an env's threads; AnswerStore serialises its calls.
    connection = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000,
                                 check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    return connection


def read_fingerprint(path: str | os.PathLike) -> str | None:
    """The fingerprint a store was written under, or None when there is no store at ``path`` yet.

    Raises:
        AnswerStoreError: the file exists but is not an answer store (``reason="not_a_store"``).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        connection = _connect(path, readonly=True)
        try:
            row = connection.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        finally:
            connection.close()
    except sqlite3.DatabaseError as err:
        raise AnswerStoreError(f"{path} is not an answer store ({err})", reason="not_a_store") from None
    return None if row is None else str(row[0])


class AnswerStore:
    """Answers keyed by (image id, :func:`normalize_question`) under one answerer fingerprint.

    Args:
        path: the SQLite file (created, with its folder, unless ``readonly``).
        fingerprint: the answerer's fingerprint; a new store records it, an existing one must match.
        readonly: open for reading only (several processes may read while one writes).

    Raises:
        AnswerStoreMismatchError: the store was written under another fingerprint.
        AnswerStoreError: no store at ``path`` with ``readonly``, a file that is not a store, or
            another schema version (``reason`` says which).

    Use as a context manager, or call :meth:`close`. Threads may share a store (its calls are
    serialised); a store opened in one process reopens its connection by itself in a forked child
    (SQLite connections must not cross ``fork``).
    """

    def __init__(self, path: str | os.PathLike, fingerprint: str, *, readonly: bool = False):
        if not isinstance(fingerprint, str) or not fingerprint:
            raise AnswerStoreError(f"answer store {path}: the fingerprint must be a non-empty string, got {fingerprint!r}",
                                   reason="bad_fingerprint")
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.readonly = readonly
        if readonly and not self.path.exists():
            raise AnswerStoreError(
                f"no answer store at {self.path}; fill one with `chatir answer --store {self.path}` "
                "or `chatir answer --import <dialog file> --store ...`",
                reason="missing",
            )
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection: sqlite3.Connection | None = None
        self._pid = -1
        self._lock = threading.RLock()
        try:
            self._open()
        except sqlite3.DatabaseError as err:
            self.close()
            raise AnswerStoreError(f"{self.path} is not an answer store ({err})", reason="not_a_store") from None
        except AnswerStoreError:
            self.close()
            raise

    # --- connection --------------------------------------------------------------------------------

    def _open(self) -> None:
        connection = _connect(self.path, self.readonly)
        self._connection, self._pid = connection, os.getpid()
        if not self.readonly:
            # WAL: readers never block the writer and a killed writer leaves the last commit intact.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS answers (image_id TEXT NOT NULL, question TEXT NOT NULL, "
                    "answer TEXT NOT NULL, PRIMARY KEY (image_id, question)) WITHOUT ROWID"
                )
                connection.execute("INSERT OR IGNORE INTO meta VALUES ('fingerprint', ?)", (self.fingerprint,))
                connection.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema") != SCHEMA_VERSION:
            raise AnswerStoreError(
                f"answer store {self.path} has schema {meta.get('schema')!r}; this version reads schema {SCHEMA_VERSION!r}",
                reason="schema",
            )
        if meta.get("fingerprint") != self.fingerprint:
            raise AnswerStoreMismatchError(self.path, str(meta.get("fingerprint")), self.fingerprint)

    @property
    def connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise AnswerStoreError(f"answer store {self.path} is closed", reason="closed")
        if self._pid != os.getpid():  # a forked child: the parent's connection is not ours to use
            self._connection = None
            self._open()
        return self._connection

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    def __enter__(self) -> "AnswerStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"AnswerStore({str(self.path)!r}, fingerprint={self.fingerprint!r}, readonly={self.readonly})"

    # --- reading -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return int(self.connection.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[str | None]:
        """The stored answer for each ``(image_id, question)`` (questions are normalised), None where absent."""
        normalized = [(str(image_id), normalize_question(question)) for image_id, question in keys]
        found: dict[tuple[str, str], str] = {}
        unique = list(dict.fromkeys(normalized))
        with self._lock:
            connection = self.connection
            for start in range(0, len(unique), _KEYS_PER_QUERY):
                chunk = unique[start : start + _KEYS_PER_QUERY]
                values = ",".join("(?, ?)" for _ in chunk)
                params = [part for key in chunk for part in key]
                rows = connection.execute(
                    f"SELECT image_id, question, answer FROM answers WHERE (image_id, question) IN (VALUES {values})", params
                )
                for image_id, question, answer in rows:
                    found[(image_id, question)] = answer
        return [found.get(key) for key in normalized]

    def items(self) -> list[tuple[str, str, str]]:
        """Every ``(image_id, normalised question, answer)``, sorted (for exports and comparisons)."""
        with self._lock:
            query = "SELECT image_id, question, answer FROM answers ORDER BY image_id, question"
            rows = self.connection.execute(query).fetchall()
        return [tuple(row) for row in rows]

    # --- writing -----------------------------------------------------------------------------------

    def put_many(self, rows: Sequence[tuple[str, str, str]]) -> int:
        """Add ``(image_id, question, answer)`` rows in one transaction; returns how many were new.

        A key already stored (or repeated within ``rows``) keeps its first answer.

        Raises:
            AnswerStoreError: the store is read-only, or a row is not three strings (nothing is written).
        """
        if self.readonly:
            raise AnswerStoreError(f"answer store {self.path} was opened read-only", reason="readonly")
        prepared = []
        for i, row in enumerate(rows):
            if len(row) != 3 or not all(isinstance(part, str) for part in row):
                raise AnswerStoreError(
                    f"answer store {self.path}: row {i} must be (image_id, question, answer) strings, got {row!r}",
                    reason="bad_row",
                )
            image_id, question, answer = row
            prepared.append((image_id, normalize_question(question), answer))
        if not prepared:
            return 0
        with self._lock:
            connection = self.connection
            before = connection.total_changes
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany("INSERT OR IGNORE INTO answers VALUES (?, ?, ?)", prepared)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            return connection.total_changes - before


class StoreAnswerer:
    """An :class:`~chatir_env.protocols.Answerer` that answers from an :class:`AnswerStore`.

    Questions the store holds for their target are answered from it. The rest (misses) go to
    ``inner`` in one batched call, one per distinct (target, normalised question), and are written
    through to the store unless it is read-only. Without ``inner``, a miss gets ``fallback``, or,
    when ``fallback`` is None, an :class:`AnswerStoreError` (``reason="unanswered"``) naming the
    first missing (image, question).

    Args:
        store: the store.
        inner: the answerer to ask on a miss. When it has a ``fingerprint``, it must be the store's
            (else :class:`AnswerStoreMismatchError`): a store never caches another model's answers.
        fallback: the answer to a miss when there is no ``inner`` (e.g. "i don't know").

    ``stats`` counts ``hits``, ``misses`` (answered by ``inner``) and ``fallbacks``.
    """

    def __init__(self, store: AnswerStore, inner: Any = None, *, fallback: str | None = None):
        inner_fingerprint = getattr(inner, "fingerprint", None)
        if inner_fingerprint is not None and str(inner_fingerprint) != store.fingerprint:
            raise AnswerStoreMismatchError(store.path, store.fingerprint, str(inner_fingerprint))
        self.store = store
        self.inner = inner
        self.fallback = fallback
        self.stats = {"hits": 0, "misses": 0, "fallbacks": 0}

    @property
    def fingerprint(self) -> str:
        return self.store.fingerprint

    def answer(self, targets: Sequence[str], dialogs: Sequence[Dialog] | None, questions: Sequence[str]) -> list[str]:
        targets, questions = list(targets), list(questions)
        check_answer_batch(targets, dialogs, questions, dialogs_optional=True)
        answers = self.store.get_many(list(zip(targets, questions)))
        missing = [i for i, a in enumerate(answers) if a is None]
        self.stats["hits"] += len(answers) - len(missing)
        if not missing:
            return answers
        if self.inner is None:
            if self.fallback is None:
                first = missing[0]
                raise AnswerStoreError(
                    f"answer store {self.store.path} has no answer to {questions[first]!r} for image {targets[first]!r} "
                    f"({len(missing)} of {len(answers)} questions in this batch unanswered); fill it with `chatir answer`, "
                    "or give the StoreAnswerer an inner answerer or a fallback",
                    reason="unanswered",
                )
            self.stats["fallbacks"] += len(missing)
            return [self.fallback if a is None else a for a in answers]
        # One inner call for every distinct missing key: a question repeated in the batch is asked once.
        first_of: dict[tuple[str, str], int] = {}
        for i in missing:
            first_of.setdefault((targets[i], normalize_question(questions[i])), i)
        asked = list(first_of.values())
        generated = self.inner.answer(
            [targets[i] for i in asked],
            None if dialogs is None else [dialogs[i] for i in asked],
            [questions[i] for i in asked],
        )
        if len(generated) != len(asked):
            raise ValueError(
                f"{type(self.inner).__name__}.answer returned {len(generated)} answers for {len(asked)} questions"
            )
        by_key = {key: str(answer) for key, answer in zip(first_of, generated)}
        self.stats["misses"] += len(asked)
        if not self.store.readonly:
            self.store.put_many([(targets[i], questions[i], by_key[key]) for key, i in first_of.items()])
        for i in missing:
            answers[i] = by_key[(targets[i], normalize_question(questions[i]))]
        return answers


# --- recorded ChatIR answers ------------------------------------------------------------------------


def recorded_rows(records: Iterable[tuple[str, Dialog]]) -> tuple[list[tuple[str, str, str]], int]:
    """``(image_id, question, answer)`` rows of parsed dialog-file records, and how many turns were left out.

    Turns are left out when they could not be split into question and answer.
    """
    from .data.chatir_files import split_turn

    rows: list[tuple[str, str, str]] = []
    unsplittable = 0
    for image_id, dialog in records:
        for question, answer in dialog.turns:
            # load_dialog_file returns (whole turn, "") for a turn it could not split: no answer to store.
            if not answer and not split_turn(question).answerable:
                unsplittable += 1
                continue
            rows.append((image_id, question, answer))
    return rows, unsplittable


def release_fingerprint(path: str | os.PathLike) -> str:
    """The fixed fingerprint of a released dialog file's answers.

    :data:`VISDIAL_HUMAN_FINGERPRINT` for ``VisDial_v1.0_queries_val.json`` (people answered),
    :data:`CHATIR_RELEASE_FINGERPRINT` for any other.
    """
    from .data.chatir_files import VISDIAL_QUERIES_FILE

    return VISDIAL_HUMAN_FINGERPRINT if Path(path).name == VISDIAL_QUERIES_FILE else CHATIR_RELEASE_FINGERPRINT


def import_dialog_files(
    store: AnswerStore, paths: Sequence[str | os.PathLike], *, batch_size: int = 10_000
) -> dict[str, dict[str, int]]:
    """Import the answers of released ChatIR dialog files into ``store``, one file after another.

    Turns are split by ``chatir_env.data.chatir_files`` (its rules handle several '?' in one turn and
    FLAN's "Answer:" markers); answers are stored exactly as recorded. A question already stored for
    an image keeps its first answer: the file imported first wins, as in ``RecordedAnswerer``.
    Each batch of ``batch_size`` rows is one transaction; rerunning an interrupted import adds only
    what is missing.

    Returns:
        Per file name: ``turns`` read, ``added`` rows, ``kept_earlier`` (already stored, first answer
        kept), ``unsplittable`` turns left out (no '?' or other boundary between question and answer).

    Raises:
        AnswerStoreError: a file whose :func:`release_fingerprint` is not the store's
            (``reason="fingerprint_mismatch"``: recorded answers never enter a live model's store,
            nor human answers a BLIP2 one).
        DialogFileError: a malformed file (names the file and entry).
    """
    from .data.chatir_files import load_dialog_file

    for path in paths:
        if release_fingerprint(path) != store.fingerprint:
            raise AnswerStoreMismatchError(store.path, store.fingerprint, release_fingerprint(path))
    report: dict[str, dict[str, int]] = {}
    for path in paths:
        path = Path(path)
        rows, unsplittable = recorded_rows(load_dialog_file(path))
        added = sum(store.put_many(rows[start : start + batch_size]) for start in range(0, len(rows), batch_size))
        report[path.name] = {"turns": len(rows) + unsplittable, "added": added, "kept_earlier": len(rows) - added,
                             "unsplittable": unsplittable}
    return report

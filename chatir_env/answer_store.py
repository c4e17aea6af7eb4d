"""Answer store stand-in: the interface of the persistent answer store, on SQLite.

A minimal version of the real store (same names and signatures), so that the training worlds and
their tests run; the real store replaces this file.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Sequence


def normalize_question(question: str) -> str:
    """How questions are keyed: whitespace collapsed, case-folded."""
    return " ".join(question.split()).casefold()


def read_fingerprint(path: str | os.PathLike) -> str | None:
    """The fingerprint a store was written under, or None when there is no store at ``path`` yet."""
    path = Path(path)
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
    finally:
        db.close()
    return None if row is None else str(row[0])


class AnswerStore:
    """(image id, normalised question) -> answer, under one answerer fingerprint per file."""

    def __init__(self, path: str | os.PathLike, fingerprint: str, *, readonly: bool = False):
        self.path, self.fingerprint, self.readonly = Path(path), str(fingerprint), readonly
        if readonly and not self.path.is_file():
            raise FileNotFoundError(f"answer store {self.path} does not exist")
        uri = f"file:{self.path}?mode=ro" if readonly else str(self.path)
        self.db = sqlite3.connect(uri, uri=readonly)
        if not readonly:
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute("CREATE TABLE IF NOT EXISTS answers (image TEXT, question TEXT, answer TEXT, PRIMARY KEY (image, question))")
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('fingerprint', ?)", (self.fingerprint,))
            self.db.commit()
        stored = self.db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()[0]
        if stored != self.fingerprint:
            raise ValueError(f"answer store {self.path} holds answers of {stored!r}, not of {self.fingerprint!r}")

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[str | None]:
        out = []
        for image_id, question in keys:
            row = self.db.execute("SELECT answer FROM answers WHERE image = ? AND question = ?",
                                  (image_id, normalize_question(question))).fetchone()
            out.append(None if row is None else row[0])
        return out

    def put_many(self, rows: Sequence[tuple[str, str, str]]) -> int:
        with self.db:
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO answers VALUES (?, ?, ?)",
                                [(i, normalize_question(q), a) for i, q, a in rows])
            return self.db.total_changes - before


class StoreAnswerer:
    """An answerer backed by a store; misses go to ``inner`` in one batch and are written through."""

    def __init__(self, store: AnswerStore, inner=None, *, fallback: str | None = None):
        self.store, self.inner, self.fallback = store, inner, fallback

    def answer(self, targets, dialogs, questions) -> list[str]:
        found = self.store.get_many(list(zip(targets, questions)))
        missing = [i for i, a in enumerate(found) if a is None]
        if missing and self.inner is not None:
            new = self.inner.answer([targets[i] for i in missing], [dialogs[i] for i in missing],
                                    [questions[i] for i in missing])
            self.store.put_many([(targets[i], questions[i], a) for i, a in zip(missing, new)])
            for i, a in zip(missing, new):
                found[i] = a
        if any(a is None for a in found):
            if self.fallback is None:
                raise KeyError("no stored answer")
            found = [self.fallback if a is None else a for a in found]
        return found

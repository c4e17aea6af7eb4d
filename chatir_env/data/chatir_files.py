r"""Loaders for the files of the official ChatIR release and for VisDial v1.0.

Dialog files (``ChatGPT_BLIP2.json``, ``FLAN_ALPACA_XXL_BLIP2.json``, ``Human_BLIP2.json``,
``Unanswered_ChatGPT_BLIP2.json``, ``VisDial_v1.0_queries_val.json``) are JSON lists of
``{"img": "unlabeled2017/....jpg", "dialog": [caption, "question? answer", ...]}``.
``load_dialog_file`` turns one into ``[(image_id, Dialog), ...]`` such that
``dialog.truncated(t).text()`` equals the official evaluation's ``", ".join(entry["dialog"][:t + 1])``
character for character, whitespace included.

How a turn string is split into (question, answer) (``split_turn``):

* The generator wrote ``question + " " + answer``. Some questioners wrote their own made-up answer
  after the question ("What color is the shirt? Answer: blue Answer: white white"); the first
  ``Answer:`` marker starts the reply side.
* The question ends at the last ``?`` before that marker (ChatGPT often asks two questions in one
  turn: "What kind of beach is it? Sandy or rocky? sandy"), when a space or the end of the string
  follows it. ChatGPT's "...image?\nAnswer: ..." splits at the first space after the ``?``.
* A turn without ``?`` (a few hundred in FLAN and Unanswered, where the question was cut off) splits
  at its last double space when it has one, else it cannot be split: the whole string is the
  question and the answer is empty (``TurnSplit.answerable`` is False).
* Whatever the rule picks, ``" ".join(p for p in (question, answer) if p) == turn`` holds exactly; a
  split that would break it falls back to ``(turn, "")``.

``clean_question`` / ``clean_answer`` give tidy strings for people and for a recorded answerer's
optional clean mode; they are not used where exactness matters.

Every error names the file and the entry index (``DialogFileError``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Sequence

from ..dialog import Dialog

# The four released questioners whose turns BLIP2 answered, and the human-answered VisDial queries.
BLIP2_DIALOG_FILES = (
    "ChatGPT_BLIP2.json",
    "FLAN_ALPACA_XXL_BLIP2.json",
    "Human_BLIP2.json",
    "Unanswered_ChatGPT_BLIP2.json",
)
VISDIAL_QUERIES_FILE = "VisDial_v1.0_queries_val.json"
DIALOG_FILES = BLIP2_DIALOG_FILES + (VISDIAL_QUERIES_FILE,)
SEARCH_SPACE_FILE = "Search_Space_val_50k.json"

_ANSWER_MARKER = re.compile(r"answer\s*:", re.IGNORECASE)


class DialogFileError(ValueError):
    """A data file that cannot be used; the message names the file and, where known, the entry."""

    def __init__(self, path: str | os.PathLike, message: str, entry: int | None = None):
        self.path = str(path)
        self.entry = entry
        where = f"{self.path}, entry {entry}" if entry is not None else self.path
        super().__init__(f"{where}: {message}")


# --- locating the data -----------------------------------------------------------------------------


def default_data_dir() -> Path | None:
    """``$CHATIR_DATA`` if set, else ``../shared/data/chatir`` next to the checkout, if it exists."""
    env = os.environ.get("CHATIR_DATA")
    if env:
        return Path(env)
    guess = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "chatir"
    return guess if guess.is_dir() else None


# --- turns -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnSplit:
    question: str
    answer: str
    answerable: bool  # False: no '?' or other boundary was found; the answer is unknown

    def joined(self) -> str:
        return " ".join(p for p in (self.question, self.answer) if p)


def split_turn(turn: str) -> TurnSplit:
    """Split a released turn string into (question, answer); see the module docstring for the rule."""
    marker = _ANSWER_MARKER.search(turn)
    region_end = marker.start() if marker else len(turn)

    def exact(q: str, a: str, answerable: bool = True) -> TurnSplit:
        split = TurnSplit(q, a, answerable)
        return split if split.joined() == turn else TurnSplit(turn, "", False)

    marks = [i for i in range(region_end) if turn[i] == "?"]
    # The last '?' (before any made-up "Answer:") followed by a space or ending the string.
    for i in reversed(marks):
        if i + 1 == len(turn):
            return exact(turn, "")
        if turn[i + 1] == " ":
            rest = turn[i + 2 :]
            return exact(turn[: i + 1], rest) if rest else exact(turn, "")
    if marks:  # '?' followed by something else ("?\nAnswer: ..."): split at the next space
        space = turn.find(" ", marks[-1] + 1)
        if space >= 0 and space + 1 < len(turn):
            return exact(turn[:space], turn[space + 1 :])
        return exact(turn, "")
    if marker and marker.start() > 0 and turn[marker.start() - 1] == " ":
        return exact(turn[: marker.start() - 1], turn[marker.start() :])
    double = turn.rfind("  ")
    if double > 0 and double + 2 < len(turn):
        return exact(turn[: double + 1], turn[double + 2 :])
    return TurnSplit(turn, "", False)


def clean_question(question: str) -> str:
    """The question without a made-up "Answer: ..." tail, whitespace collapsed."""
    marker = _ANSWER_MARKER.search(question)
    if marker and marker.start() > 0:
        question = question[: marker.start()]
    return " ".join(question.split())


def clean_answer(answer: str) -> str:
    """The answer without leading "Answer:" markers, whitespace collapsed."""
    answer = " ".join(answer.split())
    while True:
        match = _ANSWER_MARKER.match(answer)
        if not match:
            return answer
        answer = answer[match.end() :].strip()


def question_key(question: str) -> str:
    """How questions are matched: clean, case-folded."""
    return clean_question(question).casefold()


# --- JSON ------------------------------------------------------------------------------------------


def read_json(path: str | os.PathLike, object_pairs_hook: Callable | None = None) -> Any:
    """Parse a JSON file; a missing, non-UTF-8, truncated or malformed file is a ``DialogFileError``.

    ``object_pairs_hook`` is ``json.loads``'s (e.g. to drop fields while parsing).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DialogFileError(path, "file does not exist (fetch the release with `chatir download`)") from None
    except OSError as err:
        raise DialogFileError(path, f"cannot be read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DialogFileError(path, f"is not UTF-8 text (byte {err.start}: {raw[err.start:err.start + 1]!r})") from None
    if not text.strip():
        raise DialogFileError(path, "is empty")
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as err:
        truncated = err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string")
        cut = " (the file looks cut short: fetch it again with `chatir download`)" if truncated else ""
        raise DialogFileError(path, f"is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}{cut}") from None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# --- ChatIR dialog files ---------------------------------------------------------------------------


def parse_dialog_entries(data: Any, path: str | os.PathLike = "<data>") -> list[tuple[str, Dialog]]:
    """Validate parsed dialog-file JSON and build ``[(image_id, Dialog)]``."""
    if not isinstance(data, list):
        raise DialogFileError(path, f"must hold a JSON list of dialogs, got a {_type_name(data)}")
    out: list[tuple[str, Dialog]] = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise DialogFileError(path, f"must be an object with 'img' and 'dialog', got a {_type_name(entry)}", i)
        for key in ("img", "dialog"):
            if key not in entry:
                raise DialogFileError(path, f"has no field {key!r}", i)
        image_id, turns = entry["img"], entry["dialog"]
        if not isinstance(image_id, str) or not image_id:
            raise DialogFileError(path, f"field 'img' must be a non-empty string, got {_type_name(image_id)}", i)
        if not isinstance(turns, list) or not turns:
            raise DialogFileError(
                path, f"field 'dialog' must be a non-empty list [caption, turn, ...], got {_type_name(turns)}", i)
        for j, turn in enumerate(turns):
            if not isinstance(turn, str):
                raise DialogFileError(path, f"dialog[{j}] must be a string, got {_type_name(turn)}", i)
        splits = [split_turn(t) for t in turns[1:]]
        out.append((image_id, Dialog(turns[0], tuple((s.question, s.answer) for s in splits))))
    return out


def check_targets(records: Sequence[tuple[str, Any]], corpus: Collection[str], path: str | os.PathLike) -> None:
    """Every record's target must be in ``corpus``; the error names the file, entry and id."""
    corpus = corpus if isinstance(corpus, (set, frozenset, dict)) else set(corpus)
    for i, (image_id, _) in enumerate(records):
        if image_id not in corpus:
            raise DialogFileError(path, f"target {image_id!r} is not in the corpus ({len(corpus)} images)", i)


def load_dialog_file(
    path: str | os.PathLike, *, corpus: Collection[str] | None = None
) -> list[tuple[str, Dialog]]:
    """Load a ChatIR dialog file as ``[(image_id, Dialog)]`` in file order.

    With ``corpus`` (the search space or an index's ids), a target outside it is an error.
    """
    records = parse_dialog_entries(read_json(path), path)
    if corpus is not None:
        check_targets(records, corpus, path)
    return records


def load_search_space(path: str | os.PathLike) -> list[str]:
    """The corpus image paths, in protocol order (unique non-empty strings)."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DialogFileError(path, f"must hold a JSON list of image paths, got a {_type_name(data)}")
    seen: dict[str, int] = {}
    for i, image_id in enumerate(data):
        if not isinstance(image_id, str) or not image_id:
            raise DialogFileError(path, f"must be a non-empty string (an image path), got {_type_name(image_id)}", i)
        if image_id in seen:
            raise DialogFileError(path, f"repeats {image_id!r} (first at entry {seen[image_id]})", i)
        seen[image_id] = i
    return list(data)


# --- VisDial v1.0 ----------------------------------------------------------------------------------


def _without_answer_options(pairs: list[tuple[str, Any]]) -> dict:
    return {key: value for key, value in pairs if key != "answer_options"}


def load_visdial(
    path: str | os.PathLike,
    *,
    image_id: str | Callable[[Any], str] = "{image_id}",
    add_question_mark: bool = True,
    corpus: Collection[str] | None = None,
) -> list[tuple[str, Dialog]]:
    """Load the official VisDial v1.0 json (``{"data": {"questions", "answers", "dialogs"}}``).

    Args:
        path: the VisDial json file (e.g. ``visdial_1.0_val.json``).
        image_id: how a VisDial ``image_id`` becomes a corpus id: a format string with ``{image_id}``
            (e.g. ``"unlabeled2017/{image_id:012d}.jpg"``) or a function.
        add_question_mark: VisDial stores questions without "?"; ChatIR's files add it.
        corpus: if given, every target must be in it.

    A round without an ``answer`` (the test split's last round) gets an empty answer. The rounds'
    ``answer_options`` (100 per round, unused here) are dropped while parsing: kept, they would hold
    12 million numbers for the train file, several GB of Python objects.
    """
    data = read_json(path, object_pairs_hook=_without_answer_options)
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        raise DialogFileError(path, "must be an object with a 'data' object (VisDial v1.0 format)")
    body = data["data"]
    for key in ("questions", "answers", "dialogs"):
        if key not in body:
            raise DialogFileError(path, f"'data' has no field {key!r}")
        if not isinstance(body[key], list):
            raise DialogFileError(path, f"'data.{key}' must be a list, got {_type_name(body[key])}")
    questions, answers = body["questions"], body["answers"]
    for name, table in (("questions", questions), ("answers", answers)):
        for i, s in enumerate(table):
            if not isinstance(s, str):
                raise DialogFileError(path, f"'data.{name}[{i}]' must be a string, got {_type_name(s)}")
    to_id = (lambda v, f=image_id: f.format(image_id=v)) if isinstance(image_id, str) else image_id

    def lookup(table: list, name: str, idx: Any, i: int, r: int) -> str:
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(table):
            raise DialogFileError(path, f"round {r} has {name} index {idx!r}, outside data.{name}s (length {len(table)})", i)
        return table[idx]

    out: list[tuple[str, Dialog]] = []
    for i, entry in enumerate(body["dialogs"]):
        if not isinstance(entry, dict):
            raise DialogFileError(path, f"must be an object, got a {_type_name(entry)}", i)
        for key in ("image_id", "caption", "dialog"):
            if key not in entry:
                raise DialogFileError(path, f"has no field {key!r}", i)
        if not isinstance(entry["caption"], str):
            raise DialogFileError(path, f"field 'caption' must be a string, got {_type_name(entry['caption'])}", i)
        if not isinstance(entry["dialog"], list):
            raise DialogFileError(path, f"field 'dialog' must be a list of rounds, got {_type_name(entry['dialog'])}", i)
        turns = []
        for r, rnd in enumerate(entry["dialog"]):
            if not isinstance(rnd, dict) or "question" not in rnd:
                raise DialogFileError(path, f"round {r} must be an object with a 'question' index", i)
            q = lookup(questions, "question", rnd["question"], i, r)
            a = lookup(answers, "answer", rnd["answer"], i, r) if "answer" in rnd else ""
            if add_question_mark and not q.rstrip().endswith("?"):
                q = q.rstrip() + "?"
            turns.append((q, a))
        try:
            target = to_id(entry["image_id"])
        except (ValueError, TypeError, KeyError) as err:
            raise DialogFileError(path, f"image_id {entry['image_id']!r} does not fit the id format ({err})", i) from None
        out.append((str(target), Dialog(entry["caption"], tuple(turns))))
    if corpus is not None:
        check_targets(out, corpus, path)
    return out


def load_data_dir(
    data_dir: str | os.PathLike, files: Iterable[str] = DIALOG_FILES, *, check_corpus: bool = True
) -> dict[str, list[tuple[str, Dialog]]]:
    """Load several dialog files of one release folder, checked against its search space."""
    data_dir = Path(data_dir)
    corpus = set(load_search_space(data_dir / SEARCH_SPACE_FILE)) if check_corpus else None
    return {name: load_dialog_file(data_dir / name, corpus=corpus) for name in files}

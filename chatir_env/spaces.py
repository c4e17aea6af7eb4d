"""The dialog observation: text fields in Gymnasium spaces that the env checker accepts."""

from __future__ import annotations

import string
import unicodedata

from gymnasium import spaces

from .dialog import Dialog

# Printable ASCII without line breaks: a questioner sees one line per field.
CHARSET = frozenset(string.ascii_letters + string.digits + string.punctuation + " ")
MAX_CAPTION_CHARS = 512
MAX_ANSWER_CHARS = 200


def to_charset(text: str, max_chars: int) -> str:
    """Text as the observation shows it: accents folded, other characters outside CHARSET dropped."""
    folded = unicodedata.normalize("NFKD", text)
    return "".join(ch if ch in CHARSET else (" " if ch.isspace() else "") for ch in folded)[:max_chars]


def dialog_space(max_rounds: int, max_question_chars: int) -> spaces.Dict:
    """``{"caption": Text, "questions": Tuple[Text] * R, "answers": Tuple[Text] * R, "round": Discrete(R + 1)}``.

    Turns not yet played are empty strings.
    """
    text = lambda n: spaces.Text(max_length=n, min_length=0, charset=CHARSET)
    return spaces.Dict({
        "caption": text(MAX_CAPTION_CHARS),
        "questions": spaces.Tuple([text(max_question_chars)] * max_rounds),
        "answers": spaces.Tuple([text(MAX_ANSWER_CHARS)] * max_rounds),
        "round": spaces.Discrete(max_rounds + 1),
    })


def dialog_observation(dialog: Dialog, max_rounds: int, max_question_chars: int) -> dict:
    pad = max_rounds - dialog.round
    return {
        "caption": to_charset(dialog.caption, MAX_CAPTION_CHARS),
        "questions": tuple(to_charset(q, max_question_chars) for q in dialog.questions) + ("",) * pad,
        "answers": tuple(to_charset(a, MAX_ANSWER_CHARS) for a in dialog.answers) + ("",) * pad,
        "round": dialog.round,
    }


def observation_dialog(observation: dict) -> Dialog:
    """The Dialog an observation shows (the inverse of ``dialog_observation`` up to the charset)."""
    r = int(observation["round"])
    return Dialog(observation["caption"], tuple(zip(observation["questions"][:r], observation["answers"][:r])))

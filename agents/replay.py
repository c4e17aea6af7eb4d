r"""Replay the questions of a recorded ChatIR dialog file: the released questioners as baselines.

``ReplayQuestioner("ChatGPT_BLIP2.json")`` asks, in each episode, the questions that the recorded
questioner asked about that episode's target, in their recorded order: turn ``t`` of the recorded
dialog at round ``t``. Files of the official release (names or short aliases, found in ``data_dir``,
``$CHATIR_DATA`` or ``../shared/data/chatir``; any other path is read as given):

=================  ==================================  ===================================
alias              file                                questioner
=================  ==================================  ===================================
``human``          ``VisDial_v1.0_queries_val.json``   people (VisDial v1.0 val)
``human_blip2``    ``Human_BLIP2.json``                the same questions, BLIP2 answers
``chatgpt``        ``ChatGPT_BLIP2.json``              ChatGPT
``flan``           ``FLAN_ALPACA_XXL_BLIP2.json``      FLAN-Alpaca-XXL
``unanswered``     ``Unanswered_ChatGPT_BLIP2.json``   ChatGPT without seeing the answers
=================  ==================================  ===================================

Finding the episode's recorded dialog. The eval runner tells a questioner only the captions
(``reset(captions, pools)``), so by default a dialog is looked up by its caption:

1. the caption exactly as recorded, then
2. the caption normalised (case-folded, whitespace collapsed, surrounding punctuation stripped),
   which survives the observation's charset folding;
3. when a caption matches several recorded dialogs (never in the official files: their 2,064
   captions are distinct) and the episode has a question pool (VisDialReplay), the dialog whose
   questions the pool holds most of wins; otherwise the caption is ambiguous and an error.

Callers that know the target ids do better: ``reset(captions, pools, targets=[id, ...])`` looks each
episode up by image id (``"unlabeled2017/....jpg"``), and ``target_map`` (caption -> image id) routes
a caption to an id. An episode whose target is not in the file: ``on_unknown="error"`` (default)
raises ``KeyError`` at ``reset`` naming the caption and the file, before any round is played;
``on_unknown="pass"`` lets that episode ask nothing (``None``: the runner counts a pass) and counts
it in ``unknown_targets``.

Which question is asked at round ``r`` (0-based): ``observation["round_index"]`` when the runner set
it (it counts rounds, including passes), else ``observation["round"]``. Past the recorded dialog's
last turn the questioner passes (``None``).

The question text (``questions=``):

* ``"sanitized"`` (default): the recorded string with each run of control characters (a few
  ChatGPT turns hold "?\nAnswer:") replaced by one space. The env refuses control characters, so
  this is the closest string it accepts; a word-piece tokenizer (BLIP's, CLIP's) sees the same
  tokens either way, so the replayed dialogs rank as the recorded ones.
* ``"exact"``: the recorded string unchanged (``Dialog.truncated(t)`` of the file, character for
  character); the env refuses the ~97 ChatGPT questions holding a line break and the runner counts
  them as invalid.
* ``"clean"``: ``clean_question`` (made-up "Answer: ..." tails dropped, whitespace collapsed).

Turns that the loader could not split (no '?'; a few hundred in FLAN and Unanswered) are asked as
the whole recorded turn string, exactly as the file's dialog holds them.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Mapping, Sequence

from ..answerers.replay import sanitize_question  # the world's pools sanitize recorded questions the same way
from ..data.chatir_files import DIALOG_FILES, clean_question, default_data_dir, load_dialog_file
from ..dialog import Dialog

FILE_ALIASES: dict[str, str] = {
    "human": "VisDial_v1.0_queries_val.json",
    "visdial": "VisDial_v1.0_queries_val.json",
    "human_blip2": "Human_BLIP2.json",
    "chatgpt": "ChatGPT_BLIP2.json",
    "flan": "FLAN_ALPACA_XXL_BLIP2.json",
    "flan_alpaca_xxl": "FLAN_ALPACA_XXL_BLIP2.json",
    "unanswered": "Unanswered_ChatGPT_BLIP2.json",
    "unanswered_chatgpt": "Unanswered_ChatGPT_BLIP2.json",
}
QUESTION_MODES = ("sanitized", "exact", "clean")


def resolve_dialog_file(dialog_file: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """A path as given if it exists, else an alias or release file name inside the data folder."""
    path = Path(dialog_file)
    if path.exists():
        return path
    name = FILE_ALIASES.get(str(dialog_file).lower(), str(dialog_file))
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    if folder is not None and (folder / name).exists():
        return folder / name
    known = ", ".join(sorted(FILE_ALIASES)) + "; files: " + ", ".join(DIALOG_FILES)
    where = f"in {folder}" if folder is not None else "(no data folder: set $CHATIR_DATA or pass data_dir)"
    raise FileNotFoundError(
        f"dialog file {str(dialog_file)!r} not found as a path nor {where}; fetch the release with "
        f"`chatir download`. Aliases: {known}"
    )


def normalize_caption(caption: str) -> str:
    """Case-folded, accents folded, whitespace collapsed, surrounding punctuation stripped."""
    folded = unicodedata.normalize("NFKD", caption)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return " ".join(folded.casefold().split()).strip(" .,;:!?\"'")


class ReplayQuestioner:
    """Asks a recorded ChatIR questioner's questions for each episode's target (see the module docs).

    Args:
        dialog_file: a path, a release file name, or an alias (``chatgpt``, ``human``, ...).
        data_dir: where release file names and aliases are looked up.
        questions: ``"sanitized"`` (default), ``"exact"`` or ``"clean"``.
        on_unknown: ``"error"`` (default) or ``"pass"`` for an episode whose target the file lacks.
        target_map: optional caption -> image id, consulted before the caption lookup.
        records: ready ``[(image_id, Dialog)]`` instead of a file (tests, custom data).
    """

    def __init__(
        self,
        dialog_file: str | os.PathLike | None = None,
        *,
        data_dir: str | os.PathLike | None = None,
        questions: str = "sanitized",
        on_unknown: str = "error",
        target_map: Mapping[str, str] | None = None,
        records: Sequence[tuple[str, Dialog]] | None = None,
    ):
        if questions not in QUESTION_MODES:
            raise ValueError(f"questions must be one of {', '.join(QUESTION_MODES)}, got {questions!r}")
        if on_unknown not in ("error", "pass"):
            raise ValueError(f"on_unknown must be 'error' or 'pass', got {on_unknown!r}")
        if records is None:
            if dialog_file is None:
                raise ValueError("ReplayQuestioner needs a dialog_file (path, release file name or alias) or records")
            self.source = str(resolve_dialog_file(dialog_file, data_dir))
            records = load_dialog_file(self.source)
        else:
            self.source = str(dialog_file or "<records>")
        self.questions_mode = questions
        self.on_unknown = on_unknown
        self.target_map = dict(target_map or {})
        self.records: list[tuple[str, Dialog]] = list(records)
        self._by_id: dict[str, int] = {}
        self._by_caption: dict[str, list[int]] = {}
        self._by_norm: dict[str, list[int]] = {}
        for i, (image_id, dialog) in enumerate(self.records):
            self._by_id.setdefault(image_id, i)
            self._by_caption.setdefault(dialog.caption, []).append(i)
            self._by_norm.setdefault(normalize_caption(dialog.caption), []).append(i)
        self.unknown_targets = 0
        self._episodes: list[int | None] = []

    # --- lookups -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.records)

    def question_text(self, question: str) -> str:
        if self.questions_mode == "exact":
            return question
        if self.questions_mode == "clean":
            return clean_question(question) or sanitize_question(question)
        return sanitize_question(question)

    def dialog_for(self, caption: str, pool: Sequence[str] | None = None, target: str | None = None) -> int | None:
        """Index of the recorded dialog for an episode, or None when the file has none."""
        if target is None and caption in self.target_map:
            target = self.target_map[caption]
        if target is not None:
            return self._by_id.get(target)
        found = self._by_caption.get(caption) or self._by_norm.get(normalize_caption(caption)) or []
        if len(found) <= 1:
            return found[0] if found else None
        if pool:
            keys = {" ".join(q.casefold().split()) for q in pool}
            score = lambda i: sum(" ".join(q.casefold().split()) in keys for q in self.records[i][1].questions)
            best = max(found, key=score)
            if sum(score(i) == score(best) for i in found) == 1:
                return best
        ids = [self.records[i][0] for i in found[:4]]
        raise KeyError(
            f"caption {caption!r} matches {len(found)} dialogs in {self.source} (targets {ids}); "
            f"pass targets= to reset or a target_map to tell them apart"
        )

    # --- the questioner interface ------------------------------------------------------------------

    def reset(
        self,
        captions: Sequence[str],
        pools: Sequence[Sequence[str]] | None = None,
        targets: Sequence[str] | None = None,
    ) -> None:
        if targets is not None and len(targets) != len(captions):
            raise ValueError(f"reset got {len(targets)} targets for {len(captions)} captions")
        episodes: list[int | None] = []
        for e, caption in enumerate(captions):
            index = self.dialog_for(caption, pools[e] if pools is not None else None,
                                    targets[e] if targets is not None else None)
            if index is None:
                what = f"target {targets[e]!r}" if targets is not None else f"caption {caption!r}"
                if self.on_unknown == "error":
                    raise KeyError(
                        f"{what} has no recorded dialog in {self.source} ({len(self.records)} dialogs); "
                        f"replay needs the file's own targets (VisDial val), or on_unknown='pass'"
                    )
                self.unknown_targets += 1
            episodes.append(index)
        self._episodes = episodes

    def ask(self, observations: Sequence[dict]) -> list[str | None]:
        if len(observations) != len(self._episodes):
            raise ValueError(f"ask got {len(observations)} observations for {len(self._episodes)} episodes; call reset first")
        out: list[str | None] = []
        for obs, index in zip(observations, self._episodes):
            r = int(obs.get("round_index", obs["round"]))
            if index is None:
                out.append(None)
                continue
            recorded = self.records[index][1].questions
            out.append(self.question_text(recorded[r]) if r < len(recorded) else None)
        return out


__all__ = ["ReplayQuestioner", "FILE_ALIASES", "resolve_dialog_file", "normalize_caption", "sanitize_question"]

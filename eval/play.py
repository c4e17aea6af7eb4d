"""Play ChatIR in the terminal: be the answerer or the questioner, and watch the top 10 change.

Three ways to play (``chatir play ...``):

* **Answerer** (default, ``--role answerer``) on a world's targets: pick a target from a sheet of
  candidates (``candidates.png``; or give ``--target ID``); its image is saved as ``target.png``
  (Shapes, enlarged to at least 144 px with sharp pixels) or its path is shown (VisDial: a COCO path).
  The world's caption starts the dialog; a questioner (``--questioner``: a short name such as
  ``shapes_template``, ``llm``, ``replay``, or ``package.module:Class``, with ``--questioner-arg
  key=value``) asks, you answer. An answer the world cannot read (the Shapes oracle's answer set for
  that question; "blue water" to "what is the background?") gets a one-line notice with what it
  reads and does not use up the round: type it again to keep it, or another answer.
* **Questioner** (``--role questioner``): you type the questions, the world's answerer answers about a
  hidden target (drawn at random, or ``--target``), revealed as ``target.png`` at the end. A question
  the world does not understand is asked only when typed again.
* **Your own images**: index a folder with ``chatir index --retriever R --model DIR --corpus FOLDER
  --out my.index``, then ``chatir play --index my.index --retriever R --model DIR``. You type a first
  description of the image you have in mind, answer the questioner's questions, and watch the top 10
  narrow down. There is no target, so no rank is shown (``--target ID`` names one if you like).

With a target, every round is played by the core (``chatir_env.core.EpisodeBatch``, one episode), the
same code every env and the benchmark play through; you stand in for the answerer or the questioner.
After the caption and after every round the top 10 is saved as one contact sheet (``round_00.png``,
``round_01.png``, ...; the target, when known, framed in green) in ``--out``, and the target's rank
(1 = first) is printed. The whole dialog with its ranks is written to ``dialog.json``. In both roles
``:help`` explains what to type (examples of what the world understands) without using up a round;
``:quit`` (or the end of the input) stops early; an empty answer means "i don't know".

``play_session`` is the loop itself, with injectable input and output streams for scripts and tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

DONT_KNOW = "i don't know"
QUIT_WORDS = {":quit", ":q", "quit", "exit", ":exit"}
CELL = 160
LABEL_H = 18
MIN_SIDE = 144  # the smallest side a person is shown an image at


# --- contact sheets ------------------------------------------------------------------------------


def _placeholder(text: str, size: int = CELL):
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), (90, 90, 90))
    ImageDraw.Draw(im).text((6, size // 2 - 6), text[-24:], fill=(230, 230, 230))
    return im


def _fit(image, size: int = CELL):
    """The image scaled to fit a ``size`` square (pixel-sharp when enlarging a tiny render), centred."""
    from PIL import Image

    image = image.convert("RGB")
    scale = min(size / image.width, size / image.height)
    if scale >= 2:  # a whole factor keeps every source pixel the same size on screen
        image = enlarged(image, min(image.size) * int(scale))
    else:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
    new = image.size
    canvas = Image.new("RGB", (size, size), (40, 40, 40))
    canvas.paste(image, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


def contact_sheet(
    images: Sequence[Any],
    labels: Sequence[str],
    highlight: Sequence[bool] | None = None,
    title: str = "",
    columns: int = 5,
    cell: int = CELL,
):
    """One PIL image: ``images`` in a grid, each with its label underneath.

    ``images`` are PIL images or None for a grey placeholder; ``highlight[i]`` frames image i in green;
    ``title`` on top.
    """
    from PIL import Image, ImageDraw

    n = len(images)
    columns = max(1, min(columns, n or 1))
    rows = max(1, -(-n // columns))
    pad = 4
    title_h = LABEL_H + 4 if title else 0
    width = columns * (cell + pad) + pad
    sheet = Image.new("RGB", (width, title_h + rows * (cell + LABEL_H + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 4), title[: width // 6], fill=(0, 0, 0))
    for i, (image, label) in enumerate(zip(images, labels)):
        r, c = divmod(i, columns)
        x = pad + c * (cell + pad)
        y = title_h + pad + r * (cell + LABEL_H + pad)
        tile = _fit(image, cell) if image is not None else _placeholder(label, cell)
        sheet.paste(tile, (x, y))
        if highlight is not None and highlight[i]:
            for k in range(3):
                draw.rectangle((x + k, y + k, x + cell - 1 - k, y + cell - 1 - k), outline=(0, 200, 0))
        draw.text((x + 2, y + cell + 2), label[: cell // 6], fill=(0, 0, 0))
    return sheet


def _image_or_none(world, image_id: str):
    if world.image is None:
        return None
    try:
        return world.image(image_id)
    except Exception:  # a missing or corrupt file: a placeholder, not a crash
        return None


def _short(image_id: str) -> str:
    return image_id.rsplit("/", 1)[-1]


def save_sheet(world, ids: Sequence[str], path: Path, title: str = "", target: str | None = None,
               numbered: bool = True) -> Path:
    labels = [f"{i + 1}. {_short(x)}" if numbered else _short(x) for i, x in enumerate(ids)]
    sheet = contact_sheet([_image_or_none(world, x) for x in ids], labels, [x == target for x in ids], title)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


# --- the loop ------------------------------------------------------------------------------------


@dataclass
class PlayResult:
    dialog: Any
    target: str | None
    ranks: list[int | None] = field(default_factory=list)  # 1-based, per round (0: the caption)
    sheets: list[Path] = field(default_factory=list)
    top: list[list[str]] = field(default_factory=list)
    completed: bool = False  # all rounds played (not quit early)


class _Quit(Exception):
    pass


HELP_WORDS = {":help", ":h", "help"}


class _Terminal:
    def __init__(self, stdin: TextIO, stdout: TextIO):
        self.stdin, self.stdout = stdin, stdout

    def say(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def ask(self, prompt: str) -> str:
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            self.say()
            raise _Quit()
        text = line.strip()
        if not getattr(self.stdin, "isatty", lambda: False)():
            self.say(text)  # piped or scripted input: echo it, so the transcript reads as a dialog
        if text.lower() in QUIT_WORDS:
            raise _Quit()
        return text


def _normal(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .!")


def _options_text(options: Sequence[str], typed: str = "", limit: int = 8) -> str:
    """What the world reads, in a few words: all of a short list, else examples; and the closest to ``typed``."""
    close = difflib.get_close_matches(_normal(typed), options, n=3, cutoff=0.5) if typed else []
    if len(options) <= limit:
        text = "one of: " + ", ".join(options)
    else:
        step = max(1, len(options) // 4)
        text = f"one of {len(options)} answers such as " + ", ".join(list(options)[::step][:4])
    return text + (f" (closest to yours: {', '.join(close)})" if close else "")


class PersonAnswerer:
    """An answerer that asks the person at the terminal: the world's answerer when a person plays it.

    ``options(question)`` gives the answers the world can read (None: any, or it cannot say). An answer
    outside them gets a one-line notice and is asked again; typing the same answer again keeps it.
    ``:help`` shows what the world reads without using up the round; an empty answer is "i don't know".
    """

    def __init__(self, term: _Terminal, options: Callable[[str], Sequence[str] | None] | None = None):
        self.term, self.options, self.round = term, options, 1

    def help(self, question: str) -> None:
        options = self.options(question) if self.options else None
        self.term.say("  answer about your target image in a few words; Enter alone: i don't know; :quit stops.")
        if options is not None:
            self.term.say(f"  to this question the world reads {_options_text(options, limit=12)}")

    def ask_one(self, question: str) -> str:
        options = self.options(question) if self.options else None
        self.term.say(f"Q{self.round}: {question}")
        refused = None
        while True:
            answer = self.term.ask(f"A{self.round}> ")
            if answer.lower() in HELP_WORDS:
                self.help(question)
                continue
            if not answer or _normal(answer) == _normal(DONT_KNOW):
                return DONT_KNOW
            if options is None:
                return answer
            known = {_normal(o): o for o in options}
            if _normal(answer) in known:
                return known[_normal(answer)]  # the world's own spelling: "Water." reads as "water"
            if refused is not None and _normal(answer) == refused:
                return answer  # confirmed: recorded as typed, though the world reads nothing from it
            refused = _normal(answer)
            self.term.say(f"  the world can't read {answer!r} as an answer to this question; "
                          f"it reads {_options_text(options, answer)}. Type it again to keep it, or another answer.")

    def answer(self, targets: Sequence[str | None], dialogs: Sequence[Any], questions: Sequence[str]) -> list[str]:
        return [self.ask_one(question) for question in questions]


def _top_ids(world, dialog, k: int) -> list[str]:
    """The top ``k`` ids ordered as ranks count.

    Score descending, ties by corpus position (a stable sort), so the sheet's numbering agrees with the target's
    rank. The core keeps ranks, not this order.
    """
    import torch

    vectors = world.retriever.encode_dialogs([dialog])
    embeddings = world.index.embeddings
    scores = (vectors.to(embeddings.device, embeddings.dtype) @ embeddings.T)[0]
    return [world.index.ids[p] for p in torch.sort(scores, descending=True, stable=True).indices[:k].tolist()]


def enlarged(image, min_side: int = MIN_SIDE):
    """``image`` scaled up by a whole factor, nearest-neighbour, until its short side is at least ``min_side``.

    A 36 px Shapes render becomes 144 px of sharp, square pixels that a person can answer from.
    """
    from PIL import Image

    factor = max(1, -(-min_side // min(image.size)))
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST) if factor > 1 else image


def pick_target(world, term: _Terminal, out_dir: Path, candidates: int = 10, seed: int = 0) -> str:
    """Show ``candidates`` of the world's targets as a numbered sheet and let the person pick one."""
    import numpy as np

    targets = list(world.targets)
    if not targets:
        raise ValueError(f"world {world.name!r} has no targets to pick from; pass --target ID")
    rng = np.random.default_rng(seed)
    chosen = [targets[i] for i in rng.choice(len(targets), size=min(candidates, len(targets)), replace=False)]
    path = save_sheet(world, chosen, out_dir / "candidates.png", "pick a target")
    term.say(f"candidate targets (sheet: {path}):")
    for i, t in enumerate(chosen, 1):
        caption = world.captions.get(t, "")
        term.say(f"  {i:2d}. {t}" + (f"  ({caption})" if caption else ""))
    while True:
        text = term.ask(f"pick a target 1-{len(chosen)} (Enter: 1) or type a target id: ")
        if not text:
            return chosen[0]
        if text.isdigit() and 1 <= int(text) <= len(chosen):
            return chosen[int(text) - 1]
        try:
            world.index.positions([text])
            return text
        except KeyError:
            pass
        term.say(f"  {text!r} is neither 1-{len(chosen)} nor an id in the corpus")


def play_session(
    world,
    *,
    role: str = "answerer",
    questioner=None,
    target: str | None = None,
    caption: str | None = None,
    rounds: int = 10,
    out_dir: str | Path = "chatir_play",
    top_k: int = 10,
    pick: bool = False,
    candidates: int = 10,
    seed: int = 0,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    max_question_chars: int = 300,
) -> PlayResult:
    """Play one dialog in the terminal (streams injectable). See the module docstring.

    With a target, every round is played by the core (``EpisodeBatch`` with one episode) over a view of
    ``world`` whose answerer is the person (``role="answerer"``) or the world's own (``"questioner"``).
    Without one (your own images), there is no rank to keep: the dialog grows and the top ``top_k``
    is shown.

    Args:
        world: the world to play in.
        role: ``"answerer"``: ``questioner`` asks, the person answers; ``"questioner"``: the person asks,
            ``world.answerer`` answers about ``target`` (``pick``ed, or drawn at random with ``seed``).
        questioner: asks in the answerer role.
        target: the target id (None: ``pick`` one, or none at all in the answerer role).
        caption: the first description; default: the world's caption of ``target``, else typed in.
        rounds: the most questions asked.
        out_dir: folder for the contact sheets, ``target.png`` and ``dialog.json``.
        top_k: images per contact sheet.
        pick: let the person pick the target from ``candidates`` of the world's targets.
        candidates: how many targets to pick from.
        seed: seeds the candidates and the random target.
        stdin: input stream (default ``sys.stdin``).
        stdout: output stream (default ``sys.stdout``).
        max_question_chars: longest question the core accepts.

    Returns:
        The dialog, the target, the 1-based rank after every round (None without a target), the sheets
        and top ids per round, and whether every round was played.

    Raises:
        ValueError: a role the world cannot play (no answerer, no questioner, no targets) or an unknown target.
    """
    from ..core import EpisodeBatch, InvalidQuestionError, validate_question
    from ..dialog import Dialog
    from ..rewards import RewardFn
    from ..spaces import dialog_observation

    if role not in ("answerer", "questioner"):
        raise ValueError(f"role must be 'answerer' or 'questioner', got {role!r}")
    term = _Terminal(stdin or sys.stdin, stdout or sys.stdout)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = PlayResult(dialog=None, target=None)
    # The language the world's answerer speaks is the one its retriever reads (None: it cannot say).
    options = getattr(world.answerer, "answer_options", None)
    try:
        if role == "questioner":
            if world.answerer is None:
                raise ValueError("the questioner role needs a world with an answerer (e.g. --world shapes_oracle)")
            if target is None:
                if pick:
                    target = pick_target(world, term, out, candidates, seed)
                else:
                    import numpy as np

                    if not world.targets:
                        raise ValueError(f"world {world.name!r} has no targets; pass --target ID")
                    target = list(world.targets)[int(np.random.default_rng(seed).integers(len(world.targets)))]
        elif questioner is None:
            raise ValueError("the answerer role needs a questioner")
        elif target is None and pick:
            target = pick_target(world, term, out, candidates, seed)
        if target is not None:
            world.index.positions([target])  # an unknown id is an error naming it
        result.target = target

        if role == "answerer" and target is not None:
            image = _image_or_none(world, target)
            if image is not None:
                enlarged(image.convert("RGB")).save(out / "target.png")
                term.say(f"your target: {target} (image: {out / 'target.png'}); answer questions about it (:help for help)")
            else:
                term.say(f"your target: {target} (open that image); answer questions about it (:help for help)")
        if caption is None and target is not None:
            caption = world.captions.get(target)
        if caption is None:
            while not caption:
                caption = term.ask("describe the image you are looking for: ")
        else:
            term.say(f"caption: {caption}")

        person = PersonAnswerer(term, options) if role == "answerer" else None
        core = None
        if target is not None:
            # A one-episode view of the world: this target with this caption, answered by whoever plays it.
            view = dataclasses.replace(world, answerer=person or world.answerer, targets=[target], captions={target: caption})
            core = EpisodeBatch(view, 1, rounds, RewardFn(corpus_size=len(world.index)), max_question_chars)
            core.reset([0], [target])
        result.dialog = core.dialogs[0] if core else Dialog(caption)

        def show(r: int) -> None:
            dialog = result.dialog
            rank = int(core.ranks[0]) + 1 if core else None
            ids = _top_ids(world, dialog, top_k)
            last = f"Q: {dialog.turns[-1][0]} A: {dialog.turns[-1][1]}" if dialog.turns else caption
            title = f"round {r}" + (f", target rank {rank}" if rank is not None else "") + f" | {last}"
            path = save_sheet(world, ids, out / f"round_{r:02d}.png", title, target)
            result.ranks.append(rank)
            result.sheets.append(path)
            result.top.append(ids)
            if rank is None:
                rank_text = "no target: no rank"
            else:
                rank_text = f"target rank: {rank} of {len(world.index)}" + (
                    f"  (in the top {top_k}!)" if rank <= top_k else "")
            term.say(f"[round {r}] {rank_text}; top {len(ids)}: {path}")

        show(0)
        if role == "answerer":
            pools = [list(world.question_pool(target))] if world.question_pool is not None and target is not None else None
            questioner.reset([caption], pools)
        for r in range(1, rounds + 1):
            if role == "answerer":
                obs = dialog_observation(result.dialog, rounds, max_question_chars)
                obs["round_index"] = r - 1
                question = questioner.ask([obs])[0]
                if question is None:
                    term.say(f"Q{r}: (the questioner passes)")
                    continue
                person.round = r
                try:
                    if core is None:  # no target, no rank to keep: the person's answer only grows the dialog
                        question = validate_question(question, max_question_chars)
                        result.dialog = result.dialog.with_turn(question, person.ask_one(question))
                    else:
                        core.step([question], [0])
                except InvalidQuestionError as err:
                    term.say(f"Q{r}: (the questioner asked something the env refuses: {err})")
                    continue
            else:
                refused = None
                while True:
                    question = term.ask(f"Q{r}> ")
                    if question.lower() in HELP_WORDS:
                        _show_help(world, target, term)
                        continue
                    if options is not None and question and options(question) is None and _normal(question) != refused:
                        refused = _normal(question)  # asked only when typed again
                        term.say("  the world does not understand this question (it would answer \"i don't know\"); "
                                 "type it again to ask anyway, or :help for examples.")
                        continue
                    try:
                        answer = core.step([question], [0]).answers[0]
                        break
                    except InvalidQuestionError as err:
                        term.say(f"  {err}")
                term.say(f"A{r}: {answer}")
            if core is not None:
                result.dialog = core.dialogs[0]
            show(r)
        result.completed = True
    except _Quit:
        term.say("stopped.")
    finally:
        if result.dialog is not None:
            _write_transcript(out / "dialog.json", result)
    if role == "questioner" and target is not None:
        image = _image_or_none(world, target)
        if image is not None:
            enlarged(image.convert("RGB")).save(out / "target.png")
        term.say(f"the target was {target}" + (f" (image: {out / 'target.png'})" if image is not None else ""))
    best = [r for r in result.ranks if r is not None]
    if best:
        term.say(f"best rank {min(best)}; dialog and ranks in {out / 'dialog.json'}")
    return result


def _show_help(world, target, term: _Terminal) -> None:
    term.say("  type a question about the hidden image, or :quit to stop.")
    if world.question_pool is not None:
        pool = list(world.question_pool(target))
        step = max(1, len(pool) // 10)
        term.say("  examples this world understands: " + "; ".join(pool[::step][:10]))


def _write_transcript(path: Path, result: PlayResult) -> None:
    d = result.dialog
    data = {
        "target": result.target,
        "caption": d.caption,
        "turns": [{"question": q, "answer": a} for q, a in d.turns],
        "ranks": result.ranks,
        "sheets": [str(p) for p in result.sheets],
        "top": result.top,
        "completed": result.completed,
    }
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


# --- building what to play on --------------------------------------------------------------------


def folder_world(index_path: str | Path, retriever, images: str | Path | None = None):
    """A World over an index of the user's own images: no answerer, no targets, images from disk."""
    from ..data.images import ImageCorpus
    from ..index import ImageIndex
    from ..worlds.base import World

    index = ImageIndex.load(index_path)
    if images is None:
        described = str(index.meta.get("corpus") or "")
        if not described.startswith("folder "):
            raise ValueError(f"index {index_path} does not say which folder it was built from; pass --images FOLDER")
        images = described[len("folder ") :]
    corpus = ImageCorpus(images, index.ids)
    return World(
        name="folder", retriever=retriever, index=index.to(getattr(retriever, "device", "cpu")), answerer=None,
        targets=[], captions={}, question_pool=None, image=corpus.load,
        config={"index": str(index_path), "images": str(images)},
    )


def _kv(pairs: Sequence[str] | None) -> dict[str, Any]:
    from ..data.index_cli import parse_retriever_args

    return parse_retriever_args(pairs)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", choices=("answerer", "questioner"), default="answerer",
                        help="answerer: a questioner asks, you answer (default); questioner: you ask, the world answers")
    parser.add_argument("--world", default="shapes_oracle", help="a registered world (default shapes_oracle)")
    parser.add_argument("--world-arg", action="append", metavar="KEY=VALUE",
                        help="world argument, e.g. corpus_size=5000 (repeatable)")
    parser.add_argument("--index", help="play on your own images: an index built with `chatir index` (answerer role)")
    parser.add_argument("--images", help="with --index: the image folder (default: the folder the index was built from)")
    parser.add_argument("--retriever", help="with --index: the retriever that built it (blip, clip or module:Name)")
    parser.add_argument("--model", help="with --index: the retriever's model directory")
    parser.add_argument("--device", help="with --index: torch device for the retriever")
    parser.add_argument("--retriever-arg", action="append", metavar="KEY=VALUE", help="with --index: extra retriever argument")
    parser.add_argument("--questioner", help="answerer role: a short name or module:Class "
                                             "(default: shapes_template on Shapes, generic otherwise)")
    parser.add_argument("--questioner-arg", action="append", metavar="KEY=VALUE",
                        help="questioner argument (JSON values; repeatable)")
    parser.add_argument("--target", help="the target id (default: pick from a sheet of candidates; none with --index)")
    parser.add_argument("--caption", help="the first description (default: the world's caption, or typed in)")
    parser.add_argument("--candidates", type=int, default=10, help="candidate targets to pick from")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=10, help="images per contact sheet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="chatir_play", help="folder for the sheets, target.png and dialog.json")


def run(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    from ..agents import make_questioner
    from ..config import ConfigError

    try:
        if args.index:
            if args.role != "answerer":
                raise ValueError(
                    "--index plays your own images as the answerer; --role questioner needs a world with an answerer")
            if not args.retriever:
                raise ValueError("--index needs --retriever (and --model) naming the retriever that built it")
            from ..data.index_cli import load_retriever

            retriever = load_retriever(args.retriever, model=args.model, device=args.device, **_kv(args.retriever_arg))
            world = folder_world(args.index, retriever, args.images)
        else:
            from ..worlds import build_world

            world = build_world(args.world, **_kv(args.world_arg))
        questioner = None
        if args.role == "answerer":
            spec = args.questioner or ("shapes_template" if world.name.startswith("shapes") else "generic")
            questioner = make_questioner(spec, **_kv(args.questioner_arg))
            if hasattr(questioner, "bind_world"):  # e.g. the policy and greedy questioners read the world's pool answers
                questioner.bind_world(world)
        play_session(
            world, role=args.role, questioner=questioner, target=args.target, caption=args.caption,
            rounds=args.rounds, out_dir=args.out, top_k=args.top_k,
            pick=args.role == "answerer" and args.target is None and not args.index,
            candidates=args.candidates, seed=args.seed, stdin=stdin, stdout=stdout,
        )
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as err:
        print(f"chatir play: {err}", file=sys.stderr)
        return 1
    return 0

"""The paper's setting: ``ChatIR/VisDial-v0`` and ``ChatIR/VisDialReplay-v0``.

Both worlds rank the 50,000 images of ChatIR's search space (``Search_Space_val_50k.json``) for the
2,064 VisDial v1.0 val targets of the official protocol, each starting from its VisDial caption (the
first string of every released dialog). They differ in who answers:

* ``visdial``: free-text questions, answered by BLIP2 looking at the target image (COCO
  ``unlabeled2017``), as in the paper. Needs the BLIP2 weights and the images.
* ``visdial_replay``: each target's question pool is the questions the four released questioners
  (ChatGPT, FLAN-Alpaca-XXL, Human, Unanswered ChatGPT) asked about it, 26 to 40 per target, answered
  with BLIP2's recorded answers (:class:`ReplayAnswerer`). No answerer model and no images needed.

Both need a retriever and an index of the search space built by it (``chatir index``): ChatIR's BLIP
dialog encoder by default (``retriever="blip"``, ``retriever_model=`` an HF directory or ChatIR's
``chatir_weights.ckpt``), ``"clip"`` for the zero-shot baseline, or any import path
``package.module:Name`` / ready retriever object whose fingerprint matches the index.

Anything missing is an error that says what to download or build and where; docs/visdial.md walks
through it.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Sequence

from ..answerers.replay import ReplayAnswerer, sanitize_question
from ..data.chatir_files import (
    BLIP2_DIALOG_FILES,
    SEARCH_SPACE_FILE,
    VISDIAL_QUERIES_FILE,
    default_data_dir,
    load_dialog_file,
    load_search_space,
)
from ..dialog import Dialog
from ..index import ImageIndex
from ..target_sample import sample_targets
from .base import World, register_world

GUIDE = "docs/visdial.md"
COCO_UNLABELED_URL = "http://images.cocodataset.org/zips/unlabeled2017.zip"
DEFAULT_BLIP2 = "Salesforce/blip2-flan-t5-xxl"
PROTOCOL_TARGETS = 2_064
PROTOCOL_CORPUS = 50_000


class VisDialSetupError(FileNotFoundError):
    """Something the VisDial worlds need is not where they were told to look.

    The message says what to download or build, and where to put it.
    """


# --- the release files ----------------------------------------------------------------------------


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    if data_dir is None:
        found = default_data_dir()
        if found is None:
            raise VisDialSetupError(
                "no ChatIR data folder given: pass data_dir=<folder> (or set $CHATIR_DATA) holding the release "
                f"files; fetch them with `chatir download --data-dir <folder>` (see {GUIDE})"
            )
        return found
    return Path(data_dir)


def _require_files(data_dir: Path, names: Sequence[str]) -> None:
    missing = [n for n in names if not (data_dir / n).is_file()]
    if missing:
        raise VisDialSetupError(
            f"ChatIR release files missing from {data_dir}: {', '.join(missing)}. Fetch them with "
            f"`chatir download --data-dir {data_dir}` (see {GUIDE})"
        )


@functools.lru_cache(maxsize=4)
def _release(data_dir: str, files: tuple[str, ...]) -> dict[str, list[tuple[str, Dialog]]]:
    """The dialog files (targets checked against the search space), parsed once per process."""
    path = Path(data_dir)
    _require_files(path, (SEARCH_SPACE_FILE, *files))
    corpus = set(load_search_space(path / SEARCH_SPACE_FILE))
    return {name: load_dialog_file(path / name, corpus=corpus) for name in files}


def protocol_targets(records: dict[str, list[tuple[str, Dialog]]]) -> tuple[list[str], dict[str, str]]:
    """The targets in file order and their captions (the same in every released file)."""
    first = next(iter(records.values()))
    targets = [t for t, _ in first]
    captions = {t: d.caption for t, d in first}
    return targets, captions


# --- the recorded answerer ------------------------------------------------------------------------


def pool_question(question: str) -> str:
    """A recorded question as a pool offers it: control characters made spaces, stripped.

    The env refuses control characters and strips questions, so a pool must offer them that way.
    """
    return sanitize_question(question).strip()


# --- retriever, index, answerer -------------------------------------------------------------------

_ORIGINAL_SUFFIXES = {".ckpt", ".pth", ".pt", ".bin", ".safetensors"}


def _blip_missing(model) -> str:
    return (
        f"ChatIR's BLIP dialog encoder was not found{f' at {model}' if model else ''}: download ChatIR's "
        "`chatir_weights.ckpt` (linked from the ChatIR README, github.com/levymsn/ChatIR) and pass "
        "retriever_model=<path to chatir_weights.ckpt> (converted on load; tokenizer=<bert-base-uncased dir> "
        "without the hub) or an HF directory saved by BlipDialogRetriever.save_pretrained"
        f" (see {GUIDE})"
    )


@functools.lru_cache(maxsize=2)
def _load_retriever(spec: str, model: str | None, device: str | None, dtype: str | None, tokenizer: str | None,
                    args: tuple) -> Any:
    kwargs = dict(args)
    if spec == "blip":
        from ..retrievers.blip import DEFAULT_TOKENIZER, BlipDialogRetriever

        if model is None or not Path(model).exists():
            raise VisDialSetupError(_blip_missing(model))
        path = Path(model)
        if path.is_file() and path.suffix in _ORIGINAL_SUFFIXES:
            return BlipDialogRetriever.from_original_checkpoint(path, tokenizer=tokenizer or DEFAULT_TOKENIZER,
                                                                device=device, dtype=dtype, **kwargs)
        return BlipDialogRetriever.from_pretrained(path, device=device, dtype=dtype, tokenizer=tokenizer, **kwargs)
    if spec == "clip":
        from ..retrievers.clip import ClipRetriever

        return ClipRetriever.from_pretrained(model or "openai/clip-vit-base-patch16", device=device, dtype=dtype,
                                             tokenizer=tokenizer, **kwargs)
    from ..retrievers.registry import load_retriever

    if dtype is not None:
        kwargs["dtype"] = dtype
    return load_retriever(spec, model=model, device=device, **kwargs)


def make_retriever(retriever: Any = "blip", retriever_model: str | os.PathLike | None = None, device: str | None = None,
                   dtype: str | None = None, tokenizer: str | os.PathLike | None = None,
                   retriever_args: dict | None = None) -> Any:
    """A retriever object from a spec (``blip``, ``clip``, ``module:Name``) or the object itself."""
    if not isinstance(retriever, str):
        return retriever
    return _load_retriever(retriever, None if retriever_model is None else str(retriever_model),
                           None if device is None else str(device), None if dtype is None else str(dtype),
                           None if tokenizer is None else str(tokenizer), tuple(sorted((retriever_args or {}).items())))


@functools.lru_cache(maxsize=2)
def _load_index(path: str, mtime: float, device: str, fingerprint: str) -> ImageIndex:
    return ImageIndex.load(path, device=device, fingerprint=fingerprint)


def load_index(index: str | os.PathLike | ImageIndex | None, retriever: Any, data_dir: Path) -> ImageIndex:
    if isinstance(index, ImageIndex):
        index.check_compatible(str(retriever.fingerprint))
        return index
    build = (
        f"build it with `chatir index --retriever blip --model <retriever model> --corpus <coco root> "
        f"--search-space {data_dir / SEARCH_SPACE_FILE} --out <index path>` (the same retriever as this world's; "
        f"see {GUIDE})"
    )
    if index is None:
        raise VisDialSetupError(f"no index given: pass index=<path of a `chatir index` output>; {build}")
    tensor_path, meta_path = ImageIndex._paths(index)
    if not tensor_path.is_file() or not meta_path.is_file():
        raise VisDialSetupError(f"index {tensor_path} (and {meta_path.name}) not found; {build}")
    device = str(getattr(retriever, "device", "cpu"))
    return _load_index(str(tensor_path), tensor_path.stat().st_mtime, device, str(retriever.fingerprint))


def select_targets(targets: list[str], index: ImageIndex, num_targets: int | None, missing_targets: str,
                   index_name: str) -> list[str]:
    if missing_targets not in ("error", "skip"):
        raise ValueError(f"missing_targets must be 'error' or 'skip', got {missing_targets!r}")
    known = set(index.ids)
    if missing_targets == "skip":
        targets = [t for t in targets if t in known]
        if not targets:
            raise ValueError(f"none of the protocol's targets is in the index {index_name}; index the search space")
    if num_targets is not None:
        if num_targets < 1:
            raise ValueError(f"num_targets must be at least 1 (or None for all), got {num_targets}")
        targets = sample_targets(targets, num_targets)  # seeded random: the first n would not estimate the whole
    missing = [t for t in targets if t not in known]
    if missing:
        raise VisDialSetupError(
            f"{len(missing)} of the {len(targets)} targets are not in the index {index_name} ({len(index)} images), "
            f"e.g. {missing[:3]}: index the whole search space ({SEARCH_SPACE_FILE}; a skipped image is listed in "
            f"<index>.skipped.json), or pass missing_targets='skip' to leave them out"
        )
    return targets


def image_loader(image_root: str | os.PathLike | None, targets: Sequence[str], required: bool,
                 holds: str = "unlabeled2017/", download: str = f"COCO unlabeled2017 ({COCO_UNLABELED_URL})"):
    """``id -> PIL image`` under ``image_root``, checked: ``None`` when there is no root and none is required.

    Args:
        image_root: the folder the ids are relative to.
        targets: ids that must exist under it when ``required``.
        required: the answerer looks at the images (missing ones are an error naming the first).
        holds: what the folder holds, for the message.
        download: what to download and unzip there, for the message.

    Raises:
        VisDialSetupError: images are required but the root is missing or lacks some targets.
    """
    if image_root is None:
        if required:
            raise VisDialSetupError(
                f"the BLIP2 answerer looks at the target images: pass image_root=<folder holding {holds}> "
                f"(download {download} and unzip it there; see {GUIDE})"
            )
        return None
    from ..answerers.blip2 import images_from_root

    root = Path(image_root)
    missing = [t for t in targets if not (root / t).is_file()]
    if missing and required:
        raise VisDialSetupError(
            f"{len(missing)} of the {len(targets)} target images are missing under {root}, e.g. {root / missing[0]}: "
            f"download {download} and unzip it into {root} so that it holds {holds} (see {GUIDE})"
        )
    return images_from_root(root)


@functools.lru_cache(maxsize=1)
def _load_blip2(path: str, image_root: str, device: str | None, dtype: str | None, batch_size: int, prompt: str | None):
    from ..answerers.blip2 import VQA_PROMPT, Blip2Answerer, images_from_root

    return Blip2Answerer.from_pretrained(path, images_from_root(image_root), device=device, dtype=dtype,
                                         batch_size=batch_size, prompt=prompt or VQA_PROMPT)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def make_blip2(blip2_model, image_root, device, dtype, batch_size: int = 16, prompt: str | None = None):
    """The BLIP2 answerer from a downloaded HF directory (or a hub id already in the HF cache)."""
    name = None if blip2_model is None else str(blip2_model)
    usable = name is not None and (Path(name).is_dir() or (not Path(name).exists() and bool(_HUB_ID.match(name))))
    if not usable:
        raise VisDialSetupError(
            f"BLIP2 answerer weights not found{f' at {name}' if name else ''}: download them once "
            f"(e.g. `huggingface-cli download {DEFAULT_BLIP2} --local-dir models/blip2-flan-t5-xxl`) and pass "
            f"blip2_model=<that directory> (see {GUIDE})"
        )
    return _load_blip2(name, str(image_root), None if device is None else str(device),
                       None if dtype is None else str(dtype), int(batch_size), prompt)


# --- the worlds -----------------------------------------------------------------------------------


def build_visdial_world(
    data_dir: str | os.PathLike | None = None,
    index: str | os.PathLike | ImageIndex | None = None,
    retriever: Any = "blip",
    retriever_model: str | os.PathLike | None = None,
    blip2_model: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    device: str | None = None,
    dtype: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    retriever_args: dict | None = None,
    answerer: Any = None,
    answer_batch_size: int = 16,
    prompt: str | None = None,
    num_targets: int | None = None,
    missing_targets: str = "error",
) -> World:
    """``ChatIR/VisDial-v0``: BLIP2 answers free-text questions about the target image.

    Args:
        data_dir: the ChatIR release folder (``chatir download``); default ``$CHATIR_DATA``.
        index: a ``chatir index`` output over the search space, built by the same retriever.
        retriever: ``"blip"`` (default), ``"clip"``, an import path ``module:Name``, or a retriever.
        retriever_model: BLIP: ChatIR's ``chatir_weights.ckpt`` or an HF directory; CLIP: an HF
            directory or hub id; an import path: passed to its ``from_pretrained``.
        blip2_model: an HF BLIP2 directory (``Salesforce/blip2-flan-t5-xxl`` downloaded).
        image_root: the folder holding COCO's ``unlabeled2017/`` (the targets' images).
        device: torch device of both models (``None``: CUDA when available).
        dtype: their dtype (``None``: float32; ``float16`` halves GPU memory, and the index must then be
            built at the same precision).
        tokenizer: the BERT tokenizer for an original BLIP checkpoint (default: the hub's).
        retriever_args: further keyword arguments of the retriever's loader.
        answerer: a ready answerer instead of BLIP2 (then no BLIP2 weights are needed).
        answer_batch_size: questions BLIP2 answers in one batch.
        prompt: BLIP2's prompt template (None: the answerer's default, ChatIR's).
        num_targets: a seeded random sample of n of the 2,064 targets (None: all).
        missing_targets: ``"error"`` (default) or ``"skip"`` for targets the index lacks.
    """
    data_dir = resolve_data_dir(data_dir)
    records = _release(str(data_dir), (VISDIAL_QUERIES_FILE,))
    all_targets, captions = protocol_targets(records)
    ret = make_retriever(retriever, retriever_model, device, dtype, tokenizer, retriever_args)
    idx = load_index(index, ret, data_dir)
    targets = select_targets(all_targets, idx, num_targets, missing_targets, str(idx.meta.get("path", index)))
    images = image_loader(image_root, targets, required=answerer is None)
    if answerer is None:
        answerer = make_blip2(blip2_model, image_root, device, dtype, answer_batch_size, prompt)
    return World(
        name="visdial",
        retriever=ret,
        index=idx,
        answerer=answerer,
        targets=targets,
        captions={t: captions[t] for t in targets},
        question_pool=None,
        image=images,
        config={"world": "visdial", "data_dir": str(data_dir), "index": str(idx.meta.get("path", index)),
                "retriever": retriever if isinstance(retriever, str) else type(retriever).__name__,
                "retriever_model": None if retriever_model is None else str(retriever_model),
                "fingerprint": idx.fingerprint,
                "blip2_model": None if blip2_model is None else str(blip2_model),
                "image_root": None if image_root is None else str(image_root),
                "num_targets": num_targets, "corpus_size": len(idx)},
    )


def build_visdial_replay_world(
    data_dir: str | os.PathLike | None = None,
    index: str | os.PathLike | ImageIndex | None = None,
    retriever: Any = "blip",
    retriever_model: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    device: str | None = None,
    dtype: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    retriever_args: dict | None = None,
    files: Sequence[str] = BLIP2_DIALOG_FILES,
    on_unknown: str = "fallback",
    pool_padding: str = "none",
    num_targets: int | None = None,
    missing_targets: str = "error",
    answer_store: Any = None,
    store_fingerprint: str | None = None,
) -> World:
    """``ChatIR/VisDialReplay-v0``: the released questioners' questions, BLIP2's recorded answers.

    ``world.question_pool(target)`` lists the target's recorded questions (26 to 40, each once up to
    case and spacing, as its first recorder wrote it; control characters made spaces);
    ``world.config["max_pool"]`` is the largest pool of the release (40): pass it as
    ``PooledChatIREnv(env, max_pool=...)``, whose action masks then hide each episode's padded slots.
    ``pool_padding="repeat"`` fills every pool to ``max_pool`` by repeating its questions from the
    start instead, so that every action of ``Discrete(max_pool)`` is a question (what agents and
    checkers that ignore action masks, such as SB3's ``check_env``, need); a repeat gets the same
    answer again.

    Args:
        data_dir: the ChatIR release folder (``chatir download``); default ``$CHATIR_DATA``.
        index: a ``chatir index`` output over the search space, built by the same retriever.
        retriever: ``"blip"`` (default), ``"clip"``, an import path ``module:Name``, or a retriever.
        retriever_model: BLIP: ChatIR's ``chatir_weights.ckpt`` or an HF directory; CLIP: an HF
            directory or hub id; an import path: passed to its ``from_pretrained``.
        image_root: the folder holding COCO's ``unlabeled2017/`` (optional: for viewing only).
        device: torch device of the retriever (``None``: CUDA when available).
        dtype: its dtype (``None``: float32; ``float16`` halves GPU memory, and the index must then be
            built at the same precision).
        tokenizer: the BERT tokenizer for an original BLIP checkpoint (default: the hub's).
        retriever_args: further keyword arguments of the retriever's loader.
        files: the recorded dialog files whose questions and answers are replayed, in priority order.
        on_unknown: a question outside the pool is answered "i don't know" (``"fallback"``) or raises
            (``"error"``).
        pool_padding: ``"none"``, or ``"repeat"`` to fill every pool to ``max_pool``.
        num_targets: the first n of the 2,064 targets (None: all).
        missing_targets: ``"error"`` (default) or ``"skip"`` for targets the index lacks.
        answer_store: a store (``chatir answer``) that answers the questions the files did not record: a
            path, opened read-only under ``store_fingerprint`` (default: the one it was written under), or an
            ``AnswerStore``. Recorded answers win.
        store_fingerprint: the answerer fingerprint ``answer_store`` must carry.
    """
    data_dir = resolve_data_dir(data_dir)
    files = tuple(files)
    records = _release(str(data_dir), files)
    all_targets, captions = protocol_targets(records)
    ret = make_retriever(retriever, retriever_model, device, dtype, tokenizer, retriever_args)
    idx = load_index(index, ret, data_dir)
    targets = select_targets(all_targets, idx, num_targets, missing_targets, str(idx.meta.get("path", index)))
    if pool_padding not in ("none", "repeat"):
        raise ValueError(f"pool_padding must be 'none' or 'repeat', got {pool_padding!r}")
    if isinstance(answer_store, (str, os.PathLike)):
        from ..answer_store import AnswerStore, read_fingerprint

        if not Path(answer_store).is_file():
            raise VisDialSetupError(f"answer store {answer_store} not found: fill it with `chatir answer` (see {GUIDE})")
        answer_store = AnswerStore(answer_store, store_fingerprint or read_fingerprint(answer_store), readonly=True)
    answerer = ReplayAnswerer(records, on_unknown=on_unknown, answer_store=answer_store)
    own_pool = lambda t: list(dict.fromkeys(pool_question(q) for q in answerer.question_pool(t)))
    max_pool = max(len(own_pool(t)) for t in all_targets)  # 40 in the release: the same for any num_targets
    pools = {t: own_pool(t) for t in targets}
    if pool_padding == "repeat":
        pools = {t: [p[i % len(p)] for i in range(max_pool)] for t, p in pools.items()}
    return World(
        name="visdial_replay",
        retriever=ret,
        index=idx,
        answerer=answerer,
        targets=targets,
        captions={t: captions[t] for t in targets},
        question_pool=lambda target: pools[target] if target in pools else own_pool(target),
        image=image_loader(image_root, targets, required=False),
        config={"world": "visdial_replay", "data_dir": str(data_dir), "index": str(idx.meta.get("path", index)),
                "retriever": retriever if isinstance(retriever, str) else type(retriever).__name__,
                "retriever_model": None if retriever_model is None else str(retriever_model),
                "fingerprint": idx.fingerprint, "files": list(files), "num_targets": num_targets,
                "corpus_size": len(idx), "max_pool": max_pool, "pool_padding": pool_padding},
    )


register_world("visdial", build_visdial_world)
register_world("visdial_replay", build_visdial_replay_world)

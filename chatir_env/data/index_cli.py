"""Encode an image corpus into an index: `chatir index --retriever R --corpus DIR --out PATH`.

The corpus is a folder of images (every image file under it), with ``--search-space`` the
protocol's list of paths relative to the folder (COCO's ``unlabeled2017/...``), or with
``--visdial-train FILE`` the COCO 2014 images of a VisDial file's dialogs (``train2014/...`` or
``val2014/...`` under the folder). The index is written
as ``PATH.safetensors`` + ``PATH.json``; unusable images are skipped and listed in
``PATH.skipped.json`` (see ``chatir_env.data.images``).

Resuming: encoded batches are saved as checkpoint shards in ``PATH.shards/`` every ``--shard-size``
images (each shard written atomically). Run the same command again after an interruption and it
continues after the last complete shard; nothing is encoded twice or lost. Shards made by another
model (another fingerprint) are refused; ``--restart`` discards them. The final index is written
atomically, then the shards are removed.

Content hashes: an index of image files records the sha256 of every image's bytes in its metadata
(``content_sha256``, aligned with the ids), so that a training world can refuse images that are also
in the benchmark's search space whatever their names. ``--add-hashes`` records them in an index built
before hashes were recorded, without encoding again. A lock file ``PATH.lock`` keeps a second process from
writing the same index at the same time.

Retrievers (``--retriever``): ``blip`` or ``clip`` with ``--model DIR`` (an HF directory), or an import
path ``package.module:Name`` naming a class (built with ``Name.from_pretrained(--model)`` when
``--model`` is given, else ``Name(**retriever args)``), a factory function, or a ready instance.
``--retriever-arg key=value`` passes extra keyword arguments (values parsed as JSON when they can be).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from ..atomic import atomic_write
from ..index import CONTENT_HASH_KEY, ImageIndex, IndexMismatchError
from ..retrievers.registry import NAMED_RETRIEVERS, load_retriever  # noqa: F401  (re-exported: index_cli.load_retriever)


class IndexLockedError(RuntimeError):
    """Another process holds the lock on the index being written."""


# --- retriever specs (shared with eval-dialogs) ----------------------------------------------------


def parse_retriever_args(pairs: Iterable[str] | None) -> dict[str, Any]:
    """``--retriever-arg KEY=VALUE`` options as keyword arguments (``chatir_env.config.parse_key_values``)."""
    from ..config import parse_key_values

    return parse_key_values(pairs, option="--retriever-arg")


def add_retriever_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retriever", required=True, help=f"{' or '.join(NAMED_RETRIEVERS)}, or an import path module:Name")
    parser.add_argument("--model", help="model directory for the retriever's from_pretrained")
    parser.add_argument("--device", help="torch device (default: the retriever's own choice)")
    parser.add_argument("--retriever-arg", action="append", metavar="KEY=VALUE", help="extra keyword argument (repeatable)")


def retriever_from_args(args: argparse.Namespace):
    return load_retriever(args.retriever, model=args.model, device=args.device, **parse_retriever_args(args.retriever_arg))


# --- building ----------------------------------------------------------------------------------------


def index_paths(out_path: str | os.PathLike) -> dict[str, Path]:
    tensor_path, meta_path = ImageIndex._paths(out_path)
    stem = tensor_path.with_suffix("")
    return {
        "tensor": tensor_path,
        "meta": meta_path,
        "shards": stem.parent / (stem.name + ".shards"),
        "lock": stem.parent / (stem.name + ".lock"),
        "skipped": stem.parent / (stem.name + ".skipped.json"),
    }


def _read_shards(shard_dir: Path, fingerprint: str) -> tuple[dict[str, tuple[int, int]], list[torch.Tensor]]:
    from safetensors import safe_open

    done: dict[str, tuple[int, int]] = {}
    tensors: list[torch.Tensor] = []
    for path in sorted(shard_dir.glob("shard-*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                emb = f.get_tensor("embeddings")
            ids = json.loads(meta["ids"])
            shard_fp = meta["fingerprint"]
        except Exception as err:  # a damaged shard: name it, let the user discard it
            raise ValueError(f"checkpoint shard {path} is unreadable ({err}); delete it or rerun with --restart") from None
        if shard_fp != fingerprint:
            raise IndexMismatchError(
                f"checkpoint shard {path} was made by model {shard_fp!r}, not by the retriever in use "
                f"({fingerprint!r}); rerun with --restart (restart=True) to discard {shard_dir}"
            )
        if len(ids) != emb.shape[0]:
            raise ValueError(f"checkpoint shard {path} holds {emb.shape[0]} rows for {len(ids)} ids; delete it")
        for row, image_id in enumerate(ids):
            if image_id in done:
                raise ValueError(f"checkpoint shard {path} repeats {image_id!r}; delete {shard_dir} or rerun with --restart")
            done[image_id] = (len(tensors), row)
        tensors.append(emb)
    return done, tensors


def _corpus_stream(corpus_items: Any, done: dict) -> tuple[Iterator[tuple[str, Any]], list[str]]:
    """Items still to encode, plus the list of all corpus ids in order.

    The list fills as the stream runs for a plain iterable; a corpus with ``ids`` and ``iter_images`` loads only
    what is left.
    """
    if hasattr(corpus_items, "ids") and hasattr(corpus_items, "iter_images"):
        ids = list(corpus_items.ids)
        return corpus_items.iter_images(i for i in ids if i not in done), ids
    ids: list[str] = []

    def stream() -> Iterator[tuple[str, Any]]:
        for image_id, item in corpus_items:
            ids.append(image_id)
            if image_id not in done:
                yield image_id, item

    return stream(), ids


def build_index(
    retriever: Any,
    corpus_items: Any,
    out_path: str | os.PathLike,
    batch_size: int = 64,
    *,
    shard_size: int | None = None,
    restart: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    lock_timeout: float = 0.0,
    meta: dict | None = None,
) -> ImageIndex:
    """Encode ``corpus_items`` with ``retriever.encode_images`` and save an ``ImageIndex`` at ``out_path``.

    Args:
        retriever: the model that encodes: ``encode_images(items)`` (one row per item) and a ``fingerprint``
            that the index records.
        corpus_items: an ``ImageCorpus`` (images loaded lazily, bad ones skipped and reported) or any
            iterable of ``(id, item)`` pairs that ``encode_images`` accepts, in a fixed order.
        out_path: where the index goes (its checkpoint shards and skipped-images report go beside it).
        batch_size: items per ``encode_images`` call (at least 1).
        shard_size: images per checkpoint shard (default ``16 * batch_size``).
        restart: discard checkpoint shards of an earlier run instead of resuming from them.
        overwrite: replace an existing index at ``out_path``.
        lock_timeout: seconds to wait for another writer of the same index (0: fail at once).
        progress: show a progress bar (and one for hashing the image files).
        meta: extra entries for the index's metadata, over the ones recorded by default.

    Returns the index (on the retriever's output device as encoded, saved to CPU files).
    """
    from filelock import FileLock, Timeout

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shard_size = max(shard_size or 16 * batch_size, 1)
    paths = index_paths(out_path)
    paths["tensor"].parent.mkdir(parents=True, exist_ok=True)
    fingerprint = str(retriever.fingerprint)
    lock = FileLock(str(paths["lock"]), timeout=lock_timeout)
    try:
        lock.acquire()
    except Timeout:
        raise IndexLockedError(
            f"another process is writing {paths['tensor']} (lock {paths['lock']} is held); wait for it to finish"
        ) from None
    try:
        if paths["tensor"].exists() and paths["meta"].exists() and not overwrite:
            raise FileExistsError(f"index {paths['tensor']} already exists; pass --overwrite (overwrite=True) to replace it")
        if restart and paths["shards"].exists():
            shutil.rmtree(paths["shards"])
        paths["shards"].mkdir(exist_ok=True)
        done, tensors = _read_shards(paths["shards"], fingerprint)
        next_shard = len(tensors)
        if hasattr(corpus_items, "skipped"):
            corpus_items.skipped.clear()
        known_total = len(corpus_items.ids) if hasattr(corpus_items, "ids") else None
        stream, order = _corpus_stream(corpus_items, done)
        seen: set[str] = set()

        bar = None
        if progress:
            from ..progress import progress as progress_bar

            bar = progress_bar(total=known_total, initial=len(done), unit="img", desc=f"indexing {paths['tensor'].name}")

        pending_ids: list[str] = []
        pending: list[torch.Tensor] = []

        def flush() -> None:
            nonlocal next_shard
            if not pending_ids:
                return
            emb = torch.cat(pending).detach().cpu().contiguous()
            shard = paths["shards"] / f"shard-{next_shard:06d}.safetensors"
            from safetensors.torch import save_file

            atomic_write(
                shard,
                lambda tmp: save_file({"embeddings": emb}, tmp,
                                      metadata={"fingerprint": fingerprint, "ids": json.dumps(pending_ids)}),
            )
            for row, image_id in enumerate(pending_ids):
                done[image_id] = (len(tensors), row)
            tensors.append(emb)
            next_shard += 1
            pending_ids.clear()
            pending.clear()

        def encode(batch: list[tuple[str, Any]]) -> None:
            ids = [i for i, _ in batch]
            with torch.no_grad():
                vectors = retriever.encode_images([item for _, item in batch])
            if vectors.ndim != 2 or vectors.shape[0] != len(batch):
                raise ValueError(f"{type(retriever).__name__}.encode_images returned shape {tuple(vectors.shape)} "
                                 f"for {len(batch)} items")
            bad = ~torch.isfinite(vectors).all(dim=1)
            if bad.any():
                raise ValueError("the retriever produced NaN/inf embeddings for "
                                 f"{[ids[j] for j in torch.nonzero(bad).flatten().tolist()][:5]}")
            pending_ids.extend(ids)
            pending.append(vectors.detach().cpu())
            if bar is not None:
                bar.update(len(batch))
            if len(pending_ids) >= shard_size:
                flush()

        batch: list[tuple[str, Any]] = []
        try:
            for image_id, item in stream:
                if image_id in seen or image_id in done:
                    raise ValueError(f"corpus lists {image_id!r} more than once")
                seen.add(image_id)
                batch.append((image_id, item))
                if len(batch) >= batch_size:
                    encode(batch)
                    batch = []
            if batch:
                encode(batch)
            flush()
        finally:
            if bar is not None:
                bar.close()

        skipped = list(getattr(corpus_items, "skipped", []))
        extra = set(done) - set(order)
        if extra:
            raise ValueError(
                f"checkpoint shards in {paths['shards']} hold {len(extra)} ids the corpus no longer lists "
                f"(e.g. {sorted(extra)[:3]}); the corpus changed: rerun with --restart"
            )
        ids = [i for i in order if i in done]
        if not ids:
            raise ValueError(f"no usable images in the corpus ({len(skipped)} skipped); nothing to index")
        rows = [tensors[done[i][0]][done[i][1]] for i in ids]
        embeddings = torch.stack(rows)
        index_meta = {
            "corpus": getattr(corpus_items, "description", None),
            "skipped": len(skipped),
            "retriever": type(retriever).__name__,
            **(meta or {}),
        }
        if hasattr(corpus_items, "path"):  # image files: record what they hold (the training worlds' leakage guard)
            index_meta[CONTENT_HASH_KEY] = content_hashes(corpus_items, ids, progress=progress)
        index = ImageIndex(embeddings, ids, fingerprint, index_meta)
        index.save(paths["tensor"])
        report = {"index": str(paths["tensor"]), "count": len(ids), "skipped": [{"id": i, "reason": r} for i, r in skipped]}
        atomic_write(paths["skipped"], lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
        shutil.rmtree(paths["shards"], ignore_errors=True)
        return index
    finally:
        lock.release()


# --- content hashes ----------------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_hashes(corpus: Any, ids: list[str], progress: bool = False, threads: int = 4) -> list[str]:
    """sha256 of each image file of ``corpus`` (anything with ``path(id)``), in ``ids`` order.

    Hashing reads every file once more after encoding; that costs little beside the encoder and
    keeps checkpoint shards free of it. The threads overlap file reads (hashlib releases the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor

    bar = None
    if progress:
        from ..progress import progress as progress_bar

        bar = progress_bar(total=len(ids), unit="img", desc="hashing images")
    out: list[str] = []
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for digest in pool.map(lambda image_id: file_sha256(corpus.path(image_id)), ids, chunksize=64):
            out.append(digest)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return out


def add_content_hashes(corpus: Any, out_path: str | os.PathLike, progress: bool = True) -> ImageIndex:
    """Record the image hashes in an index built before ``chatir index`` recorded them, without encoding again."""
    index = ImageIndex.load(out_path)
    missing = [i for i in index.ids if not Path(corpus.path(i)).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images of the index {index.meta['path']} are not under {corpus.root}, "
                                f"e.g. {corpus.path(missing[0])}: pass the --corpus the index was built from")
    index.meta[CONTENT_HASH_KEY] = content_hashes(corpus, index.ids, progress=progress)
    index.save(out_path)
    return index


# --- the command -------------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    add_retriever_arguments(parser)
    parser.add_argument("--corpus", required=True,
                        help="image folder (with --search-space: the folder the listed paths are relative to)")
    parser.add_argument("--search-space", help="JSON list of image paths (e.g. Search_Space_val_50k.json); "
                                               "default: every image under --corpus")
    parser.add_argument("--out", required=True, help="index path (PATH.safetensors + PATH.json)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, help="images per checkpoint shard (default 16 x batch size)")
    parser.add_argument("--restart", action="store_true", help="discard checkpoint shards of an earlier run")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing index")
    parser.add_argument("--max-pixels", type=int, help="skip images with more pixels than this")
    parser.add_argument("--max-bytes", type=int, help="skip image files larger than this")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .ray_engine import add_engine_arguments

    add_engine_arguments(parser)
    parser.add_argument("--visdial-train", metavar="FILE",
                        help="index the COCO 2014 images of a VisDial file's dialogs (visdial_1.0_train.json) under --corpus")
    parser.add_argument("--add-hashes", action="store_true",
                        help="only record the images' content hashes in an existing index built without them (no encoding)")


def run(args: argparse.Namespace) -> int:
    from .chatir_files import DialogFileError
    from .images import ImageCorpus

    limits = {k: v for k, v in (("max_pixels", args.max_pixels), ("max_bytes", args.max_bytes)) if v}
    try:
        if args.visdial_train:
            from .visdial_train import coco2014_image_id, load_visdial_train

            ids = list(dict.fromkeys(i for i, _ in load_visdial_train(args.visdial_train, coco2014_image_id(args.corpus))))
            corpus = ImageCorpus(args.corpus, ids, description=f"COCO 2014 images of {args.visdial_train} under {args.corpus}",
                                 **limits)
        else:
            corpus = (ImageCorpus.from_search_space(args.corpus, args.search_space, **limits) if args.search_space
                      else ImageCorpus.from_folder(args.corpus, **limits))
        if args.add_hashes:
            index = add_content_hashes(corpus, args.out, progress=not args.no_progress)
            print(f"recorded the content hashes of {len(index)} images in {index_paths(args.out)['meta']}")
            return 0
        if getattr(args, "engine", "local") == "ray":  # actors encode; this process still writes the index
            from .ray_index import ray_index_inputs

            retriever, corpus = ray_index_inputs(args, corpus)
        else:
            retriever = retriever_from_args(args)
        index = build_index(retriever, corpus, args.out, args.batch_size, shard_size=args.shard_size,
                            restart=args.restart, overwrite=args.overwrite, progress=not args.no_progress)
    except (DialogFileError, FileNotFoundError, FileExistsError, IndexLockedError, IndexMismatchError, ValueError) as err:
        print(f"chatir index: {err}", file=sys.stderr)
        return 1
    paths = index_paths(args.out)
    print(f"indexed {len(index)} images ({len(corpus.skipped)} skipped, listed in {paths['skipped']}) -> {paths['tensor']}")
    return 0

"""VisDial v1.0 train dialogs over COCO 2014 images.

One loader for the training worlds and the retriever trainer.

``visdial_1.0_train.json`` (the original format: ``data.questions``, ``data.answers`` and
``data.dialogs[{image_id, caption, dialog[{question, answer, answer_options, gt_index}]}]``) holds
123,287 dialogs, one per COCO 2014 image (train2014 and val2014 both). An image's corpus id is its
path under the COCO root: ``train2014/COCO_train2014_<12 digits>.jpg`` or
``val2014/COCO_val2014_<12 digits>.jpg``; which of the two is decided by what exists (files under
an image root, or ids of an index built from them), so the same loader serves runs with images
(indexing, the retriever trainer, live BLIP2) and without (the replay world reads an index).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable, Collection

from ..dialog import Dialog
from .chatir_files import load_visdial

VISDIAL_TRAIN_FILE = "visdial_1.0_train.json"
VISDIAL_DATA_PAGE = "https://visualdialog.org/data"  # links visdial_1.0_train.zip
COCO_2014_URLS = ("http://images.cocodataset.org/zips/train2014.zip", "http://images.cocodataset.org/zips/val2014.zip")


def coco2014_candidates(image_id: Any) -> tuple[str, str]:
    """The two places a COCO 2014 image can be: ``(train2014 path, val2014 path)``, relative to the root."""
    number = int(image_id)
    return f"train2014/COCO_train2014_{number:012d}.jpg", f"val2014/COCO_val2014_{number:012d}.jpg"


def coco2014_image_id(image_root: str | os.PathLike) -> Callable[[Any], str]:
    """VisDial ``image_id`` -> its COCO 2014 file under ``image_root``.

    The train2014 one, or the val2014 one when only that exists (VisDial's train split draws from both).
    """
    root = Path(image_root)

    def to_path(image_id: Any) -> str:
        train, val = coco2014_candidates(image_id)
        return val if not (root / train).exists() and (root / val).exists() else train

    return to_path


def coco2014_in(known_ids: Collection[str]) -> Callable[[Any], str]:
    """VisDial ``image_id`` -> the COCO 2014 corpus id that ``known_ids`` (an index's ids) holds.

    The train2014 name when it holds neither.
    """
    known = known_ids if isinstance(known_ids, (set, frozenset, dict)) else set(known_ids)

    def to_id(image_id: Any) -> str:
        train, val = coco2014_candidates(image_id)
        return val if train not in known and val in known else train

    return to_id


def load_visdial_train(path: str | os.PathLike, image_id: str | Callable[[Any], str]) -> list[tuple[str, Dialog]]:
    """``[(corpus id, Dialog)]`` of a VisDial v1.0 file in file order, questions ending in "?".

    Args:
        path: ``visdial_1.0_train.json`` (or another split in the same format).
        image_id: VisDial ``image_id`` -> corpus id: :func:`coco2014_image_id`, :func:`coco2014_in`,
            or a format string with ``{image_id}``.

    Raises:
        DialogFileError: the file is missing or malformed (the message names the entry).
    """
    return load_visdial(path, image_id=image_id)


@functools.lru_cache(maxsize=2)
def _raw_dialogs(path: str, mtime: float) -> tuple[tuple[int, Dialog], ...]:
    return tuple((int(i), d) for i, d in load_visdial(path, image_id=lambda v: str(int(v))))


def load_visdial_train_cached(path: str | os.PathLike) -> tuple[tuple[int, Dialog], ...]:
    """``((VisDial image_id, Dialog), ...)`` parsed once per process.

    The train file is ~1.2M turns, read by a training world and its validation world alike.
    """
    path = Path(path)
    return _raw_dialogs(str(path.resolve()), path.stat().st_mtime)


__all__ = ["VISDIAL_TRAIN_FILE", "coco2014_candidates", "coco2014_image_id", "coco2014_in", "load_visdial_train",
           "load_visdial_train_cached"]

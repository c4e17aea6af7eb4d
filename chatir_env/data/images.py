"""An image corpus on disk: ids in a fixed order, each loadable as a PIL image.

Images are decoded in the mode they are stored in (RGB, grayscale, palette, CMYK ...), not
converted: each retriever converts as its own preprocessing does. BLIP converts to RGB first;
OpenAI's CLIP pipeline, which ChatIR's CLIP baseline uses, resizes and crops in the stored mode and
converts to RGB after the crop, which gives other pixels for palette and CMYK images.

Two ways to name the corpus:

* ``ImageCorpus.from_search_space(root, "Search_Space_val_50k.json")``: the protocol's list of paths
  (``unlabeled2017/000000000008.jpg``), relative to ``root`` (the folder holding ``unlabeled2017/``);
  the ids are those paths, in list order.
* ``ImageCorpus.from_folder(root)``: every image file under ``root`` (recursively), id = its path
  relative to ``root`` with "/" separators, sorted.

Bad images are skipped and reported, never fatal: a missing file, an empty (zero-byte) file, a file
larger than ``max_bytes``, an image with more than ``max_pixels`` pixels (read from the header, before
decoding), and a file PIL cannot decode. Each skip is recorded in ``corpus.skipped`` as
``(id, reason)``; ``chatir index`` writes them next to the index as ``<index>.skipped.json``. A skipped
image is simply absent from the index: a benchmark whose target was skipped then fails with an error
naming the target, and the skipped file says why.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # 64 MiB
DEFAULT_MAX_PIXELS = 64_000_000  # ~8000 x 8000


class ImageSkipped(Exception):
    """Raised by ``ImageCorpus.load`` when an image is unusable; ``str()`` is the reason."""


class ImageCorpus:
    """Ids plus a loader; iterating yields ``(id, PIL.Image)`` and records skipped ids."""

    def __init__(
        self,
        root: str | os.PathLike,
        ids: Sequence[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        description: str | None = None,
    ):
        self.root = Path(root)
        self.ids = list(ids)
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"corpus under {self.root} lists an id more than once")
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.description = description or str(self.root)
        self.skipped: list[tuple[str, str]] = []

    # --- construction ------------------------------------------------------------------------------

    @classmethod
    def from_folder(cls, root: str | os.PathLike, *, suffixes: Iterable[str] = IMAGE_SUFFIXES, **kwargs) -> "ImageCorpus":
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        suffixes = {s.lower() for s in suffixes}
        ids = sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.suffix.lower() in suffixes and not p.name.startswith(".") and (p.is_file() or p.is_symlink())
        )
        return cls(root, ids, description=f"folder {root}", **kwargs)

    @classmethod
    def from_search_space(cls, root: str | os.PathLike, search_space: str | os.PathLike | Sequence[str],
                          **kwargs) -> "ImageCorpus":
        from .chatir_files import load_search_space

        ids = load_search_space(search_space) if isinstance(search_space, (str, os.PathLike)) else list(search_space)
        return cls(root, ids,
                   description=f"search space {search_space if isinstance(search_space, (str, os.PathLike)) else len(ids)}"
                               f" under {root}",
                   **kwargs)

    # --- loading -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, image_id: str) -> Path:
        return self.root / image_id

    def load(self, image_id: str) -> Image.Image:
        """The decoded image in its stored mode, or ``ImageSkipped`` with the reason it cannot be used."""
        path = self.path(image_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageSkipped("missing: no such file") from None
        except OSError as err:
            raise ImageSkipped(f"unreadable: {err.strerror or err}") from None
        if size == 0:
            raise ImageSkipped("empty: zero-byte file")
        if size > self.max_bytes:
            raise ImageSkipped(f"too large: {size} bytes > max_bytes {self.max_bytes}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    pixels = im.width * im.height
                    if pixels > self.max_pixels:
                        raise ImageSkipped(f"too large: {im.width}x{im.height} pixels > max_pixels {self.max_pixels}")
                    im.load()  # decoded here, so a corrupt file is skipped, not fatal later; the pixels outlive the file
                    return im
        except ImageSkipped:
            raise
        except Image.DecompressionBombError as err:
            raise ImageSkipped(f"too large: {err}") from None
        except (OSError, SyntaxError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
            raise ImageSkipped(f"corrupt: {type(err).__name__}: {err}") from None

    def iter_images(self, ids: Iterable[str] | None = None) -> Iterator[tuple[str, Image.Image]]:
        """Yield ``(id, image)`` for ``ids`` (default: all), appending unusable ones to ``skipped``."""
        for image_id in self.ids if ids is None else ids:
            try:
                image = self.load(image_id)
            except ImageSkipped as err:
                self.skipped.append((image_id, str(err)))
                continue
            yield image_id, image

    def __iter__(self) -> Iterator[tuple[str, Image.Image]]:
        return self.iter_images()

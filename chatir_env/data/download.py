"""Fetch the released ChatIR dialog and protocol files (levymsn/ChatIR, MIT licence) into a folder.

Each file comes from GitHub's raw URL at a pinned commit and is checked against the size and SHA-256
recorded here before it is moved into place (download to a temp file in the same folder, check,
rename), so a folder never holds a partial or altered file under a release name. A file already
present with the right checksum is not fetched again.

    chatir download --data-dir data/chatir
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write

REPO = "levymsn/ChatIR"
COMMIT = "c62600c90a2260c8cca44c5fb6b37bc3df53c43f"
BASE_URL = f"https://raw.githubusercontent.com/{REPO}/{COMMIT}/"


@dataclass(frozen=True)
class ReleaseFile:
    name: str  # file name in the data folder
    path: str  # path inside the repository
    size: int
    sha256: str


RELEASE_FILES: tuple[ReleaseFile, ...] = (
    ReleaseFile("ChatGPT_BLIP2.json", "dialogues/ChatGPT_BLIP2.json", 1520360,
                "e3a3e3d08aadd6540264d25eca9ef6894ff9364eaa8002ff746e801c151a3cd8"),
    ReleaseFile("FLAN_ALPACA_XXL_BLIP2.json", "dialogues/FLAN_ALPACA_XXL_BLIP2.json", 1613850,
                "aac9bcb3ecbe736885c6a846e7e1433b69795617449e44a6c8e269efd0be32b7"),
    ReleaseFile("Human_BLIP2.json", "dialogues/Human_BLIP2.json", 945474,
                "780aa994c465e4b92a344c3da0a8945a29da3ec96e3d380a0d1585d9c33cc8ae"),
    ReleaseFile("Unanswered_ChatGPT_BLIP2.json", "dialogues/Unanswered_ChatGPT_BLIP2.json", 1435119,
                "8bc9ac7e90807e72223a80f6d9f86bef91498e298c16a05eb191c4e57f83a6b8"),
    ReleaseFile("VisDial_v1.0_queries_val.json", "dialogues/VisDial_v1.0_queries_val.json", 1131983,
                "6db15734e21df441c932b84cf538ba660350e82dcb18e5d3ab8d0f99691cd210"),
    ReleaseFile("Search_Space_val_50k.json", "ChatIR_Protocol/Search_Space_val_50k.json", 1700000,
                "8a32638192419131513f2e5a6e5159d191de6789678fb3b1faa18e1ab46b44af"),
)


class DownloadError(RuntimeError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_complete(path: Path, spec: ReleaseFile) -> bool:
    return path.is_file() and path.stat().st_size == spec.size and sha256_of(path) == spec.sha256


def fetch_file(spec: ReleaseFile, data_dir: Path, *, base_url: str = BASE_URL, timeout: float = 60.0) -> Path:
    """Download one file atomically and check its size and checksum; returns its path."""
    url = base_url.rstrip("/") + "/" + spec.path
    dest = data_dir / spec.name

    def fetch(tmp: str) -> None:
        digest, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                while block := response.read(1 << 16):
                    if size + len(block) > spec.size:
                        raise DownloadError(f"{url}: more than the expected {spec.size} bytes; not the released file")
                    out.write(block)
                    digest.update(block)
                    size += len(block)
        except (urllib.error.URLError, OSError) as err:
            raise DownloadError(f"{url}: download failed ({getattr(err, 'reason', err)})") from None
        if size != spec.size:
            raise DownloadError(f"{url}: got {size} bytes, expected {spec.size} (cut short?)")
        if digest.hexdigest() != spec.sha256:
            raise DownloadError(f"{url}: SHA-256 {digest.hexdigest()} does not match the release ({spec.sha256})")

    atomic_write(dest, fetch)  # checked before the rename: a release name never holds a partial or altered file
    return dest


def download(
    data_dir: str | os.PathLike,
    *,
    files: tuple[ReleaseFile, ...] = RELEASE_FILES,
    base_url: str = BASE_URL,
    force: bool = False,
    log=print,
) -> list[Path]:
    """Fetch every release file not already present and intact; returns their paths."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in files:
        dest = data_dir / spec.name
        if not force and is_complete(dest, spec):
            log(f"ok       {dest} (already present, checksum matches)")
        else:
            if dest.exists():
                log(f"replace  {dest} (size or checksum differs from the release)")
            fetch_file(spec, data_dir, base_url=base_url)
            log(f"fetched  {dest} ({spec.size:,} bytes)")
        paths.append(dest)
    return paths


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", required=True, help="folder to put the files in (created if missing)")
    parser.add_argument("--base-url", default=BASE_URL,
                        help="where the repository's files are served (default: GitHub raw, pinned commit)")
    parser.add_argument("--force", action="store_true", help="fetch again even when a file is present and intact")


def run(args: argparse.Namespace) -> int:
    try:
        download(args.data_dir, base_url=args.base_url, force=args.force)
    except DownloadError as err:
        print(f"chatir download: {err}", file=sys.stderr)
        return 1
    print(f"ChatIR release files (MIT licence, {REPO}@{COMMIT[:7]}) are in {args.data_dir}")
    return 0

"""Write a file so that readers see the old version or the whole new one, never a partial file.

Every result, checkpoint-metadata and index write of the package goes through :func:`atomic_write`.
The new file gets the permissions a plain ``open(path, "w")`` would give it (0666 less the umask, so
0644 under the usual umask 022), not the 0600 of a ``tempfile.mkstemp`` file.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """``write(tmp)`` fills a temporary file beside ``path``, which then replaces ``path`` in one step.

    Args:
        path: the file to write; its folder must exist.
        write: called with the temporary file's path (a str); writes the whole content there. It may
            write into the empty file or replace it (as ``torch.save`` or safetensors may).

    Raises:
        Whatever ``write`` raises. The temporary file is removed if ``write`` fails or is interrupted;
        ``path`` is left as it was.
    """
    path = Path(path)
    while True:
        # Hidden, unique, and ending in the target's suffix: writers that add or read a suffix (SB3, matplotlib) keep it.
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            # O_EXCL: never clobber another writer's temp file; mode 0o666: the kernel applies the umask.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    mode = os.fstat(fd).st_mode & 0o777
    os.close(fd)
    try:
        write(str(tmp))
        os.chmod(tmp, mode)  # a writer that recreated the file may have used its own mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int | None = 2, **dumps_kwargs: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (``json.dumps(data, indent=indent, **dumps_kwargs)``)."""
    atomic_write_text(path, json.dumps(data, indent=indent, **dumps_kwargs))

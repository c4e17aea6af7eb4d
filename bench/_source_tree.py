"""Lets bench scripts run from a bare checkout (as on the lent GPU machines), not only when installed.

Installed, pyproject.toml maps eval/, train/, agents/ and configs/ into the ``chatir_env`` package;
uninstalled, ``chatir_env`` is found at the repository root but those four are not inside it, so the
package is told to look for them at the root too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def use_source_tree() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import chatir_env

    if importlib.util.find_spec("chatir_env.eval") is None:
        chatir_env.__path__.append(str(ROOT))

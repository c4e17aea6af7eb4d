"""Progress bars that suit where the output goes.

On a terminal, :func:`progress` is a plain ``tqdm`` bar. Written to a file or a pipe (a log, CI, ``nohup``),
a bar redrawn with carriage returns becomes one long line of fragments, so there it prints a whole line
at most every ``CHATIR_PROGRESS_INTERVAL`` seconds (30 by default) and a last one when it closes::

    retriever:  40%|          | 400/1000 [02:00<03:00, 3.33it/s, loss=0.512]

Every progress bar of the package comes from here.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any, Iterable

from tqdm import tqdm
from tqdm.auto import tqdm as auto_tqdm

DEFAULT_LOG_INTERVAL = 30.0  # seconds between lines when the output is not a terminal
_IN_NOTEBOOK = any(cls.__module__ == "tqdm.notebook" for cls in auto_tqdm.__mro__)  # tqdm.auto chose the widget


class LineProgress(tqdm):
    """A tqdm bar that writes whole lines (no carriage returns), for output that is not a terminal."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # tqdm's way to erase the bar; nothing to erase in a log
            return False
        self.fp.write((self.__str__() if msg is None else msg).rstrip() + "\n")
        self.fp.flush()
        self._printed_n = self.n
        return True

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)  # shown with the next line, not a line of its own

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)

    def clear(self, nolock: bool = False) -> None:  # no bar on screen to clear before tqdm.write
        pass

    def close(self) -> None:
        if not self.disable and getattr(self, "_printed_n", None) != self.n:
            self.display()  # the final count, even when the last interval has not elapsed
        self.leave = False  # tqdm would otherwise redraw the bar and end it with a blank line
        super().close()


def _is_terminal(stream: IO | None) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def log_interval() -> float:
    """Seconds between progress lines when the output is not a terminal (``$CHATIR_PROGRESS_INTERVAL``)."""
    try:
        return max(0.0, float(os.environ.get("CHATIR_PROGRESS_INTERVAL", DEFAULT_LOG_INTERVAL)))
    except ValueError:
        return DEFAULT_LOG_INTERVAL


def progress(iterable: Iterable | None = None, *, file: IO | None = None, terminal: bool | None = None,
             interval: float | None = None, **kwargs: Any) -> tqdm:
    """A progress bar: tqdm on a terminal, periodic whole lines otherwise.

    Args:
        iterable: what to iterate over, as for ``tqdm``.
        file: where to write (default ``sys.stderr``).
        terminal: force the terminal (True) or the line (False) behaviour; default: ``file.isatty()``.
        interval: seconds between lines when not on a terminal (default :func:`log_interval`).
        **kwargs: passed to ``tqdm`` (``total``, ``desc``, ``unit``, ``initial``, ``disable``, ...).

    Returns:
        The bar (a ``tqdm``): use ``update``, ``set_postfix``, ``close``, or iterate over it.
    """
    if _IN_NOTEBOOK and file is None and terminal is None:
        return auto_tqdm(iterable, **kwargs)  # a notebook: its widget redraws in place and floods nothing
    file = sys.stderr if file is None else file
    if terminal is None:
        terminal = _is_terminal(file)
    if terminal:
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(iterable, file=file, **kwargs)
    kwargs.pop("dynamic_ncols", None)
    interval = log_interval() if interval is None else interval
    # miniters=1 and maxinterval=interval: the elapsed time alone decides when a line is due.
    return LineProgress(iterable, file=file, mininterval=interval, maxinterval=max(interval, 1e-3), miniters=1,
                        ascii=True, **kwargs)

"""Graceful stop for every command, from the first instant (stdlib only: imported before anything slow).

`install_early()` runs first in `carbonledger.cli.main`, before settings, imports of the daemons or any network
call: a SIGTERM during start-up raises StopRequested, which unwinds whatever was being set up (finally blocks
run) and `main` exits 0 without a traceback. A daemon switches to `stop_on_signals(event)` once it is built, so
from then on SIGTERM asks its loop to finish the current unit of work and exit.
"""

from __future__ import annotations

import signal
import threading


class StopRequested(BaseException):
    """SIGTERM arrived before the command had started its main loop (BaseException: no `except Exception` eats it)."""


def _raise(signum: int, frame: object) -> None:
    raise StopRequested(signum)


def install_early() -> None:
    """SIGTERM raises StopRequested until a daemon installs its own handler (main thread only)."""
    signal.signal(signal.SIGTERM, _raise)


def stop_on_signals(stop: threading.Event, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Set `stop` on SIGTERM/SIGINT (main thread only); a second signal exits at once."""

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        stop.set()

    for s in signals:
        signal.signal(s, handler)

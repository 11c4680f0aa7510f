"""Graceful stop for every command, from the first instant (stdlib only: imported before anything slow).

`install_early()` runs first in `carbonledger.cli.main`, before settings, imports of the daemons or any network
call: a SIGTERM during start-up raises StopRequested, which unwinds whatever was being set up (finally blocks
run) and `main` exits 0 without a traceback. A daemon switches to `stop_on_signals(event)` once it is built, so
from then on SIGTERM asks its loop to finish the current unit of work and exit.
"""

from __future__ import annotations

import signal
import sys
import threading


class StopRequested(BaseException):
    """SIGTERM arrived before the command had started its main loop (BaseException: no `except Exception` eats it)."""


# Set by the early handler as it raises: a stop is not lost when something swallows the StopRequested (a library's
# bare `except:` around an import, say); start-up waits and `stop_on_signals` look at it.
REQUESTED = threading.Event()


def _raise(signum: int, frame: object) -> None:
    REQUESTED.set()
    raise StopRequested(signum)


def sleep_or_stop(seconds: float) -> None:
    """Sleep during start-up; StopRequested at once if a stop was asked for, before or during the sleep."""
    if REQUESTED.wait(seconds):
        raise StopRequested(signal.SIGTERM)


def _redeliver_swallowed(unraisable: "sys.UnraisableHookArgs", _default=sys.unraisablehook) -> None:
    """A signal handler runs at whatever bytecode the main thread is at; when that is a context that cannot
    propagate an exception (a weakref callback inside importlib, a __del__), Python prints "Exception ignored"
    and the stop would be lost. Instead: no output, and the signal is delivered again a moment later, when the
    main thread is back in ordinary code (or a daemon's own handler has replaced ours)."""
    if isinstance(unraisable.exc_value, StopRequested):
        signum = unraisable.exc_value.args[0] if unraisable.exc_value.args else signal.SIGTERM
        main = threading.main_thread().ident
        timer = threading.Timer(0.05, signal.pthread_kill, (main, signum))
        timer.daemon = True
        timer.start()
        return
    _default(unraisable)


def install_early() -> None:
    """SIGTERM raises StopRequested until a daemon installs its own handler (main thread only)."""
    signal.signal(signal.SIGTERM, _raise)
    sys.unraisablehook = _redeliver_swallowed


def stop_on_signals(stop: threading.Event, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Set `stop` on SIGTERM/SIGINT (main thread only); a second signal exits at once."""

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        stop.set()

    for s in signals:
        signal.signal(s, handler)
    if REQUESTED.is_set():  # a SIGTERM during start-up whose StopRequested was swallowed: stop now
        stop.set()

"""A SIGTERM that lands where Python cannot raise (a __del__, a weakref callback such as importlib's module-lock
clean-up) is not lost: it is delivered again once the main thread is back in ordinary code. Nor is one whose
StopRequested something swallowed (a library's bare `except:` around an import, a cached property that catches
everything): start-up waits raise it again, a daemon's own handler starts stopped, and an error the stop caused is
a clean stop, not "unexpected error"."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from core import shutdown

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from core.shutdown import StopRequested, install_early

    install_early()

    class Dies:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)   # the handler runs inside __del__: its exception is unraisable
            for _ in range(1000):
                pass

    try:
        Dies()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.01)
        print("signal lost")
        sys.exit(1)
    except StopRequested:
        print("stopped")
        sys.exit(0)
""")


def test_a_stop_swallowed_by_an_unraisable_context_is_delivered_again():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert out.stdout.strip() == "stopped"
    assert "Exception ignored" not in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_other_unraisable_exceptions_still_reach_the_default_hook():
    script = SCRIPT.replace("os.kill(os.getpid(), signal.SIGTERM)", "raise ValueError('boom')").replace(
        "deadline = time.monotonic() + 30", "deadline = time.monotonic() + 0.2")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1 and "signal lost" in out.stdout
    assert "Exception ignored" in out.stderr and "ValueError: boom" in out.stderr


@pytest.fixture()
def early():
    before, hook = signal.getsignal(signal.SIGTERM), sys.unraisablehook
    shutdown.install_early()
    shutdown.REQUESTED.clear()
    yield
    signal.signal(signal.SIGTERM, before)
    sys.unraisablehook = hook
    shutdown.REQUESTED.clear()


def _swallowed_sigterm() -> None:
    try:
        signal.raise_signal(signal.SIGTERM)
        time.sleep(1)  # the handler runs here at the latest
    except BaseException:  # noqa: BLE001 - what some libraries do around imports
        pass


def test_a_swallowed_stop_still_stops_start_up_waits_and_the_daemon(early):
    from core.preflight import OperatorError, ensure

    _swallowed_sigterm()
    assert shutdown.REQUESTED.is_set()
    t0 = time.monotonic()

    def down() -> None:
        raise OperatorError("node down", "start it")

    with pytest.raises(shutdown.StopRequested):
        ensure([("node", down)], wait=True)  # retries for ever otherwise
    assert time.monotonic() - t0 < 1.0
    stop = threading.Event()
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        shutdown.stop_on_signals(stop)
        assert stop.is_set()  # the daemon's loop ends at once
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def test_without_a_stop_the_waits_wait(early):
    t0 = time.monotonic()
    shutdown.sleep_or_stop(0.2)
    assert time.monotonic() - t0 >= 0.2


def test_an_error_caused_by_the_stop_is_a_clean_stop(early, monkeypatch, capsys):
    from carbonledger import cli

    def broken(args):
        _swallowed_sigterm()
        raise SystemError("AST constructor recursion depth mismatch (before=129, after=168)")

    monkeypatch.setattr(cli, "build_parser", lambda: _Parser(broken))
    monkeypatch.setattr(shutdown, "install_early", lambda: None)  # keep the fixture's handler state
    assert cli.main([]) == 0
    assert "stopped (SIGTERM) before start-up finished" in capsys.readouterr().err


class _Parser:
    def __init__(self, func):
        self.func = func

    def parse_args(self, argv):
        return type("Args", (), {"func": staticmethod(self.func), "verbose": False})()

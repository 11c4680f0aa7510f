"""A SIGTERM that lands where Python cannot raise (a __del__, a weakref callback such as importlib's module-lock
clean-up) is not lost: it is delivered again once the main thread is back in ordinary code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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

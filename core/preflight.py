"""Start-up checks of what a command depends on, each failing with one line that says what failed and how to fix it.

Every daemon checks its dependencies once before it starts (database reachable and migrated to head:
`store.preflight`; each chain's node answering as configured: `chains.preflight`; its port free: here) and fails
fast with an `OperatorError`; with `--wait` it keeps trying instead (`ensure`), logging one line when the state
changes (not one per retry), backing off to 30 s. `carbonledger.cli.main` prints an OperatorError as
`carbonledger: <what failed> — <how to fix it>`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence

from core.shutdown import sleep_or_stop

log = logging.getLogger("carbonledger.preflight")


class OperatorError(Exception):
    """A problem the operator can fix: `what` failed, do `fix`."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what} — {fix}")
        self.what, self.fix = what, fix


def first_line(exc: BaseException) -> str:
    """The last line of an exception's text (where libraries put the point), capped."""
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__).strip()[:200]


def scrub_password(text: str, url: str) -> str:
    """`text` without the password of `url`, raw or percent-decoded."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    for secret in {password, unquote(password) if password else None} - {None, ""}:
        text = text.replace(secret, "***")
    return text


def check_port(host: str, port: int, setting: str) -> None:
    """Nothing listens on host:port yet (port 0 = any free port: always fine)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise OperatorError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                                f"stop whatever uses port {port}, or choose another with --port or {setting}") from None


def ensure(checks: Sequence[tuple[str, Callable[[], object]]], *, wait: bool = False,
           stop: threading.Event | None = None, max_backoff_s: float = 30.0) -> None:
    """Run each named check; without `wait` the first failure raises. With `wait`, retry failed checks with
    exponential backoff, logging a line only when a check's outcome changes, until all pass (or `stop` is set)."""
    pending = list(checks)
    last: dict[str, str] = {}
    delay = 1.0
    while pending:
        still = []
        for name, check in pending:
            try:
                check()
            except OperatorError as err:
                if not wait:
                    raise
                if last.get(name) != str(err):
                    log.warning("waiting for a dependency", extra={"check": name, "error": err.what, "fix": err.fix})
                    last[name] = str(err)
                still.append((name, check))
            else:
                if name in last:
                    log.info("dependency is up", extra={"check": name})
        pending = still
        if pending:
            if stop is not None and stop.wait(delay):
                return
            if stop is None:
                sleep_or_stop(delay)
            delay = min(max_backoff_s, delay * 2)

"""Shared fixtures: a real Postgres per test, a real chain (eth-tester in-process, anvil over JSON-RPC)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "graphql"))  # gqlapi lives in the plain graphql/ folder

FIXTURES = Path(os.environ.get("CARBONLEDGER_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def pytest_configure(config: pytest.Config) -> None:
    from tests import seeds

    try:
        seeds.offset()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str:
    from tests import seeds

    n = seeds.offset()
    return (f"random seeds shifted by {n} (CARBONLEDGER_TEST_SEED={n} reproduces this run's scenarios)" if n
            else "random seeds as written (CARBONLEDGER_TEST_SEED=N shifts them all by N)")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """../shared/fixtures (override with CARBONLEDGER_FIXTURES); tests using it skip where it is absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"real-world fixtures not found at {FIXTURES} (set CARBONLEDGER_FIXTURES)")
    return FIXTURES


@pytest.fixture(autouse=True)
def _no_api_client_left_open(request: pytest.FixtureRequest) -> Iterator[None]:
    """An ApiClient a test opened and did not close is closed here, and named (its event loop would otherwise be
    garbage-collected with pending tasks at some later, random moment)."""
    from gqlapi.testing import OPEN_CLIENTS

    before = set(OPEN_CLIENTS)
    yield
    for client in OPEN_CLIENTS - before:
        print(f"\nconftest: {request.node.nodeid} left an ApiClient open; closed it", file=sys.stderr)
        client.close()


@pytest.fixture(scope="session")
def pg_factory() -> Iterator["PgFactory"]:
    from tests.pg import PgFactory

    factory = PgFactory()
    factory.migrate_template()
    yield factory
    factory.close()


@pytest.fixture()
def db_url(pg_factory) -> Iterator[str]:
    """A freshly migrated database of this test's own."""
    url = pg_factory.fresh()
    yield url
    pg_factory.drop(url)


@pytest.fixture()
def anvil() -> Iterator["Anvil"]:
    """A private anvil on a free port (npm @foundry-rs/anvil)."""
    from core.anvil import Anvil, anvil_binary

    if anvil_binary() is None:
        pytest.fail("anvil missing: run `npm ci` (the README's test command does)")
    with Anvil() as node:
        yield node


@pytest.fixture(scope="session")
def devnet_server() -> Iterator["DevnetServer"]:
    """The in-process eth-tester devnet served over JSON-RPC (shared; tests must not assume an empty chain)."""
    from core.devnet import DevnetServer

    with DevnetServer() as server:
        yield server


@pytest.fixture()
def chopsticks() -> Iterator["Callable[..., Chopsticks]"]:
    """Start chopsticks (a real Asset Hub runtime, npm) on free ports: `chop = chopsticks(mode="Manual")`; every
    one started is stopped after the test."""
    from core.chopsticks import Chopsticks, missing

    why = missing()
    if why:
        pytest.fail(f"chopsticks cannot run: {why}")
    started: list[Chopsticks] = []

    def start(mode: str = "Instant") -> Chopsticks:
        node = Chopsticks(mode=mode)
        started.append(node)
        return node.start()

    try:
        yield start
    finally:
        for node in started:
            node.close()


def _children(pid: int) -> list[int]:
    """Live child processes of `pid` (from /proc: no extra dependency)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            out.append(int(entry))
    return out


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Nothing left running: every fixture has been torn down by now, so a child process still alive was leaked by a
    test that failed before its cleanup (an indexer left retrying a dropped database, say). Stop it, and say so."""
    import signal
    import time

    if not os.path.isdir("/proc"):
        return
    left = _children(os.getpid())
    for pid in left:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")[:160]
            os.kill(pid, signal.SIGTERM)
            print(f"\nconftest: stopped a process a test left running: {pid} {cmd}", file=sys.stderr)
        except OSError:
            pass
    deadline = time.monotonic() + 5
    while left and time.monotonic() < deadline:
        left = [p for p in left if p in _children(os.getpid())]
        time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

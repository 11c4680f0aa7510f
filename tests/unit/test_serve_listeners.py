"""`carbonledger serve --workers N`: the listener each worker binds for itself (gqlapi.cli)."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gqlapi.cli import PerWorkerListener, reuseport_listener


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_each_unpickling_binds_a_listener_of_its_own_on_the_same_port():
    port = _port()
    shared = PerWorkerListener("127.0.0.1", port)
    assert list(shared) == []  # the supervisor holds no socket
    first, second = pickle.loads(pickle.dumps(shared)), pickle.loads(pickle.dumps(shared))
    try:
        for got in (first, second):
            assert len(got) == 1 and got[0].getsockname() == ("127.0.0.1", port)
            assert got[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            got[0].listen(8)  # both listen at once: two sockets in one SO_REUSEPORT group
        assert first[0].fileno() != second[0].fileno()
        with socket.create_connection(("127.0.0.1", port)):
            pass
    finally:
        for got in (first, second):
            got[0].close()


def test_a_port_someone_else_listens_on_stops_the_worker_with_the_startup_failure_code(capsys):
    from uvicorn.config import STARTUP_FAILURE

    with socket.socket() as other:  # a plain listener (no SO_REUSEPORT): no one may join it
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        with pytest.raises(SystemExit) as stop:
            reuseport_listener("127.0.0.1", port)
    assert stop.value.code == STARTUP_FAILURE  # the supervisor stops rather than restarting it again and again
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port or api.port" in err


def test_the_supervisor_fails_in_one_line_when_its_workers_cannot_start():
    """`serve --workers 2` past its preflight (a port taken in between): each spawned worker fails to bind while
    unpickling its arguments and exits with STARTUP_FAILURE, on which uvicorn's supervisor stops (rather than starting
    them again and again), and _run_workers raises the operator error that `carbonledger` prints as one line (exit
    1). In a subprocess: uvicorn's supervisor installs signal handlers for good."""
    root = Path(__file__).resolve().parents[2]
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        code = ("import sys, uvicorn\n"
                "from core.preflight import OperatorError\n"
                "from gqlapi.cli import _run_workers\n"
                "try:\n"
                f"    _run_workers(uvicorn.Config('gqlapi.app:app_from_env', factory=True, host='127.0.0.1', "
                f"port={other.getsockname()[1]}, workers=2, log_config=None))\n"
                "except OperatorError as err:\n"
                "    print('refused:', err)\n"
                "    sys.exit(7)\n")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "graphql")])}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 7, (run.returncode, run.stdout[-2000:], run.stderr[-2000:])
    assert "refused: an API worker failed to start" in run.stdout
    assert "API worker cannot listen on 127.0.0.1" in run.stderr

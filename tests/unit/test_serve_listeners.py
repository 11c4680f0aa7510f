"""`carbonledger serve --workers N`: the listener each worker binds for itself (gqlapi.cli)."""

from __future__ import annotations

import pickle
import socket

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
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port or api.port" in err and "Traceback" not in err

"""RpcClient against a real local HTTP server that misbehaves on purpose."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chains.evm.rpc import RpcClient, RpcError, RpcTransportError


class Flaky(BaseHTTPRequestHandler):
    script: list[str] = []
    seen = 0

    def log_message(self, *a):  # keep test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).seen += 1
        action = type(self).script.pop(0) if type(self).script else "ok"
        if action in ("429", "500", "503"):
            self.send_response(int(action))
            self.end_headers()
            return
        if action == "truncated":
            payload = b'{"jsonrpc":"2.0","id":1,"res'
        elif action == "logs":
            payload = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": [
                {"address": "0x" + "01" * 20, "topics": ["0x" + "02" * 32], "data": "0x", "logIndex": "0x1"}]}).encode()
        elif action == "error":
            payload = json.dumps({"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32005, "message": "query returned more than 10000 results"}}).encode()
        elif isinstance(body, list):
            payload = json.dumps([{"jsonrpc": "2.0", "id": b["id"], "result": hex(i)} for i, b in enumerate(body)]).encode()
        else:
            payload = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": "0x2a"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    Flaky.seen = 0
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_transport_faults_are_retried(server):
    Flaky.script = ["429", "500", "truncated", "503"]
    with RpcClient(server, retries=6) as rpc:
        assert rpc.call("eth_blockNumber") == "0x2a"
    assert Flaky.seen == 5


def test_retries_give_up(server):
    Flaky.script = ["500"] * 10
    with RpcClient(server, retries=2) as rpc, pytest.raises(RpcTransportError):
        rpc.call("eth_blockNumber")
    assert Flaky.seen == 3


def test_rpc_errors_are_answers_not_faults(server):
    Flaky.script = ["error"]
    with RpcClient(server, retries=5) as rpc, pytest.raises(RpcError) as err:
        rpc.call("eth_getLogs", [{}])
    assert err.value.code == -32005 and Flaky.seen == 1


def test_a_typed_answer_parser_leaves_faults_and_errors_to_the_generic_path(server):
    """results={"eth_getLogs": logs_result}: a list of log objects comes back as RawLogs; a truncated body is still
    a transport fault (retried), an error object still an RpcError, any other result still returned as parsed."""
    from chains.evm.decode import RawLog, logs_result

    with RpcClient(server, retries=6, results={"eth_getLogs": logs_result}) as rpc:
        Flaky.script = ["truncated", "logs"]
        got = rpc.call("eth_getLogs", [{}])
        assert len(got) == 1 and isinstance(got[0], RawLog)
        assert (got[0].address, got[0].topics, got[0].data, got[0].logIndex, got[0].blockHash) == (
            "0x" + "01" * 20, ["0x" + "02" * 32], "0x", "0x1", None)
        assert Flaky.seen == 2
        Flaky.script = ["error"]
        with pytest.raises(RpcError) as err:
            rpc.call("eth_getLogs", [{}])
        assert err.value.code == -32005
        assert rpc.call("eth_getLogs", [{}]) == "0x2a"  # not a list of objects: as parsed (the reader refuses it)
        Flaky.script = ["logs"]
        assert rpc.call("eth_call", []) == [{"address": "0x" + "01" * 20, "topics": ["0x" + "02" * 32], "data": "0x",
                                             "logIndex": "0x1"}]  # other methods: dicts


def test_batch_keeps_order(server):
    with RpcClient(server) as rpc:
        assert rpc.batch([("a", []), ("b", []), ("c", [])]) == ["0x0", "0x1", "0x2"]


def test_timeout_is_a_transport_fault():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)  # accepts the connection, never answers
    try:
        with RpcClient(f"http://127.0.0.1:{s.getsockname()[1]}", timeout_s=0.2, retries=1) as rpc, pytest.raises(RpcTransportError):
            rpc.call("eth_blockNumber")
    finally:
        s.close()


class Recorder(BaseHTTPRequestHandler):
    """Answers every JSON-RPC request itself and records its request line and headers: as a node it shows what
    reached it, as a plain-HTTP forward proxy (the request line then holds the absolute URL) what went through it."""

    seen: list[tuple[str, dict]] = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).seen.append((self.requestline, {k.lower(): v for k, v in self.headers.items()}))
        payload = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": "0x2a"}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture()
def recorder():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Recorder.seen = []
    yield srv.server_address[1]
    srv.shutdown()


@pytest.fixture()
def no_proxy_env(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    return monkeypatch


def test_user_info_becomes_basic_auth_and_leaves_the_url(recorder, no_proxy_env):
    import base64

    with RpcClient(f"http://alice:s%3Acret@127.0.0.1:{recorder}/v2/key") as rpc:
        assert rpc.call("eth_chainId") == "0x2a"
    line, headers = Recorder.seen[0]
    assert line == "POST /v2/key HTTP/1.1"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"alice:s:cret").decode()


def test_the_environments_proxy_is_used_and_no_proxy_bypasses_it(recorder, no_proxy_env):
    import base64

    with ThreadingHTTPServer(("127.0.0.1", 0), Flaky) as node:
        threading.Thread(target=node.serve_forever, daemon=True).start()
        Flaky.script, Flaky.seen = [], 0
        node_url = f"http://127.0.0.1:{node.server_address[1]}/rpc"
        no_proxy_env.setenv("HTTP_PROXY", f"http://bob:pw@127.0.0.1:{recorder}")
        with RpcClient(node_url) as rpc:
            assert rpc.call("eth_chainId") == "0x2a"
        assert Flaky.seen == 0, "the request went around the proxy"
        line, headers = Recorder.seen[0]
        assert line == f"POST {node_url} HTTP/1.1"  # a forward proxy's request line: the absolute URL
        assert headers["proxy-authorization"] == "Basic " + base64.b64encode(b"bob:pw").decode()
        no_proxy_env.setenv("NO_PROXY", "127.0.0.1")  # read when the client is built
        with RpcClient(node_url) as rpc:
            assert rpc.call("eth_chainId") == "0x2a"
        assert Flaky.seen == 1 and len(Recorder.seen) == 1
        node.shutdown()


def test_a_transport_error_does_not_show_the_urls_path(no_proxy_env):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    with RpcClient(f"http://user:hunter2pass@127.0.0.1:{port}/v3/SECRETKEY", retries=0) as rpc, \
            pytest.raises(RpcTransportError) as err:
        rpc.call("eth_chainId")
    assert "SECRETKEY" not in str(err.value) and "hunter2pass" not in str(err.value)
    assert "refused" in str(err.value).lower()


def test_threads_share_one_client(server, caplog):
    """The oracle's sender, keeper and request threads share one client: every answer reaches its own caller, and
    a pool never warns that it discards connections at the concurrency it was sized for."""
    from concurrent.futures import ThreadPoolExecutor

    with RpcClient(server) as rpc, ThreadPoolExecutor(16) as ex:
        got = list(ex.map(lambda i: rpc.batch([("a", []), ("b", []), ("c", [])]), range(400)))
    assert got == [["0x0", "0x1", "0x2"]] * 400
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]

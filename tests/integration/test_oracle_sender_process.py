"""`carbonledger oracle run` sends from a child process (oracle.sender_process): a graceful SIGTERM ends both with
nothing left running, a SIGKILLed oracle leaves no sender behind (it would hold the nonce lease), and a sender
process that dies alone is replaced and sends what is queued."""

from __future__ import annotations

import httpx
import psutil
import psycopg
import pytest

from core.anvil import free_port
from oracle.outbox import Intent, insert_intent
from oracle.testing import ORACLE_KEY, OracleProcess, deploy_world, wait_until, write_config

pytestmark = [pytest.mark.anvil]


def _family(proc: OracleProcess) -> list[psutil.Process]:
    """The oracle's descendants (the sender; multiprocessing's resource tracker)."""
    return psutil.Process(proc.proc.pid).children(recursive=True)


def _sender(proc: OracleProcess, not_pid: int | None = None) -> psutil.Process:
    found: list[psutil.Process] = []

    def up() -> bool:
        found[:] = [p for p in _family(proc) if p.pid != not_pid and "spawn_main" in " ".join(p.cmdline())]
        return bool(found)

    wait_until(up, 60, what="a sender process")
    return found[0]


def _gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _owner(proc: OracleProcess) -> bool:
    """/metrics: this oracle's sender holds the nonce lease (read from the sender process's shared status)."""
    try:
        text = httpx.get(proc.url + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return False
    return "oracle_nonce_owner 1.0" in text


def _oracle(tmp_path, anvil, db_url, name: str) -> tuple[OracleProcess, object]:
    world = deploy_world(anvil.url)
    world.deployment.write(tmp_path / "deployment.json")
    port = free_port()
    cfg = write_config(tmp_path / f"{name}.toml", rpc_url=anvil.url, deployment_file=tmp_path / "deployment.json",
                       db_url=db_url, port=port, extra="reconcile_interval_s = 3600.0")
    return OracleProcess(cfg, port, tmp_path / f"{name}.log"), world


def test_sigterm_ends_both_processes_and_a_killed_oracle_leaves_no_sender(db_url, anvil, tmp_path):
    proc, _ = _oracle(tmp_path, anvil, db_url, "graceful")
    proc.start()
    sender = _sender(proc)
    wait_until(lambda: _owner(proc), 60, what="the sender holding the nonce lease")
    family = _family(proc)
    assert proc.terminate() == 0
    assert _gone(sender)  # reaped by the oracle before it exited
    wait_until(lambda: all(_gone(p) for p in family), 20, what="the resource tracker gone too")
    text = (tmp_path / "graceful.log").read_text()
    assert "sender stopped; nonce lease released" in text and "oracle stopped" in text  # it ended its round
    assert "exited unexpectedly" not in text and ORACLE_KEY[2:].lower() not in text.lower()

    killed, _ = _oracle(tmp_path, anvil, db_url, "killed")
    killed.start()
    sender = _sender(killed)
    wait_until(lambda: _owner(killed), 60, what="the new oracle's sender holding the nonce lease")
    family = _family(killed)
    killed.kill()  # SIGKILL: no handler runs in the parent
    wait_until(lambda: all(_gone(p) for p in family), 20, what="the sender and the resource tracker gone too")
    assert _gone(sender)


def test_a_sender_process_that_dies_is_replaced_and_sends_what_is_queued(db_url, anvil, tmp_path):
    proc, world = _oracle(tmp_path, anvil, db_url, "replaced")
    with proc.start():
        first = _sender(proc)
        wait_until(lambda: _owner(proc), 60, what="the sender holding the nonce lease")
        first.kill()
        second = _sender(proc, not_pid=first.pid)
        assert second.pid != first.pid
        buyer = world.w3.eth.accounts[3]
        with psycopg.connect(db_url, autocommit=True) as c:
            insert_intent(c.cursor(), "local", Intent("after-restart", "stripe", "Marketplace", "settleOffchain",
                                                      [str(world.listing_id), buyer, "1", "pi_after_restart"]))

            def confirmed() -> bool:
                row = c.execute("SELECT status FROM oracle_intent WHERE idempotency_key = 'after-restart'").fetchone()
                return row is not None and row[0] == "confirmed"

            wait_until(confirmed, 90, what="the queued intent confirmed by the replacement sender")
        wait_until(lambda: _owner(proc), 30, what="the replacement holding the nonce lease")
        assert httpx.get(proc.url + "/health", timeout=5).status_code == 200
    text = (tmp_path / "replaced.log").read_text()
    assert "the sender process exited unexpectedly; starting another" in text
    assert ORACLE_KEY[2:].lower() not in text.lower()


def test_a_signal_to_the_whole_process_group_is_still_a_graceful_stop(db_url, anvil, tmp_path):
    """A terminal's Ctrl-C and systemd's control-group kill signal the child too: SIGINT is the parent's to act on,
    and a SIGTERM from both sides is one stop (the round ends, the lease is released, nothing is restarted)."""
    import os
    import signal

    proc, _ = _oracle(tmp_path, anvil, db_url, "group")
    proc.start()
    sender = _sender(proc)
    wait_until(lambda: _owner(proc), 60, what="the sender holding the nonce lease")
    os.kill(sender.pid, signal.SIGINT)
    assert _owner(proc) and sender.is_running() and not _gone(sender)  # ignored: still sending, still the owner
    os.kill(sender.pid, signal.SIGTERM)  # the group's SIGTERM reaches the child first...
    os.kill(proc.proc.pid, signal.SIGTERM)  # ...and the parent, whose stop sends the child another
    assert proc.proc.wait(30) == 0
    wait_until(lambda: _gone(sender), 20, what="the sender gone")
    text = (tmp_path / "group.log").read_text()
    assert "sender stopped; nonce lease released" in text and "oracle stopped" in text
    assert "exited unexpectedly" not in text and "did not stop in time" not in text

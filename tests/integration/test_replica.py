"""Reads on a real Postgres streaming replica (database.read_url): a private primary and a hot standby made with
pg_basebackup (tests.pgcluster), the real indexer on anvil writing the primary, the API reading the standby.

What must hold: answers equal the primary's; `_meta` reports what the replica replayed and the data agrees with it
(replay paused: the older block, and the primary's answers as of that block); a replica over its lag bound, or
stopped, is skipped (the primary answers, /ready and /metrics say why) and used again once it is back."""

from __future__ import annotations

import asyncio
import os
import pwd
import time

import psycopg
import pytest
from web3 import Web3

from gqlapi.testing import ApiClient
from tests.pgcluster import Cluster, pg_bin

pytestmark = pytest.mark.anvil
CHAIN = "dev"

DOC = """query($b: BlockInput) {
  _meta(chain: "dev") { block { number hash } }
  certificates(first: 100, block: $b) { nodes { id amount holder blockNumber } }
  marketStats(window: ALL, chain: "dev", block: $b) { volume }
  %s
}"""


@pytest.fixture(scope="module")
def env():
    from core.anvil import Anvil, anvil_binary
    from store.migrate import upgrade
    from tests.integration.scenario import certify, deploy, run_scenario, settings_for

    bindir = pg_bin()
    if bindir is None:
        pytest.skip("Postgres server binaries (initdb, pg_ctl, pg_basebackup) not found: apt-get install postgresql "
                    "or set CARBONLEDGER_PG_BIN")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the test servers as (Postgres "
                        "refuses root)")
    if anvil_binary() is None:
        pytest.fail("anvil missing: run `npm ci`")
    cluster = Cluster(bindir).start()
    apis: list[ApiClient] = []
    try:
        with psycopg.connect(cluster.primary_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE carbonledger")
        primary, replica = cluster.url(cluster.primary_port, "carbonledger"), cluster.url(cluster.replica_port, "carbonledger")
        upgrade(primary)
        with Anvil() as node:
            w3 = Web3(Web3.HTTPProvider(node.url))
            dep = deploy(w3)
            run_scenario(w3, dep, actions=25, seed=5)
            certify(w3, dep)  # the answers compared below hold a certificate, whatever the seed
            settings = settings_for(node.url, dep, primary, finality_depth=32)
            e = {"cluster": cluster, "w3": w3, "dep": dep, "settings": settings, "primary": primary, "replica": replica}
            index(e)
            wait_replayed(e)
            e["on_primary"] = ApiClient(primary)
            e["api"] = ApiClient(primary, read_url=[replica], replica_check_s=0.2, replica_max_lag_s=60)
            apis += [e["on_primary"], e["api"]]
            owners = sorted({a.lower() for a in w3.eth.accounts[:7]})
            e["doc"] = DOC % "\n".join(f'p{i}: portfolio(owner: "{o}", chain: "dev", block: $b) '
                                       "{ holdings { batchId tradable listed retired } }" for i, o in enumerate(owners))
            yield e
    finally:
        try:
            for api in apis:
                api.close()
        finally:  # the private servers stop whatever a client's close raised (they outlive the test otherwise)
            cluster.close()


def index(e) -> int:
    """Index the chain up to its head on the primary; the primary's cursor."""
    from indexer.runner import run_once

    assert run_once(e["settings"], db_url=e["primary"]) == 0
    return cursor(e["primary"])


def cursor(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT block_number FROM indexer_cursor WHERE chain = %s", (CHAIN,)).fetchone()
        return -1 if row is None else row[0]  # -1: the standby has not replayed the first commit yet


def wait_replayed(e, timeout: float = 60) -> int:
    """Wait until the replica's cursor equals the primary's."""
    want, deadline = cursor(e["primary"]), time.monotonic() + timeout
    while (got := cursor(e["replica"])) != want:
        assert time.monotonic() < deadline, f"replica at block {got}, primary at {want}\n{e['cluster'].log()}"
        time.sleep(0.1)
    return want


def wait_for(api: ApiClient, cond, what: str, timeout: float = 60) -> None:
    """Run the API's loop (its replica monitor runs meanwhile) until `cond()`."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        api.loop.run_until_complete(asyncio.sleep(0.1))


def answer(api: ApiClient, doc: str, block: int | None = None) -> tuple[int, dict]:
    """(the `_meta` block, the data without `_meta`)."""
    d = api.q(doc, {"b": None if block is None else {"number": block}})
    return d.pop("_meta")[0]["block"]["number"], d


def replica_status(api: ApiClient) -> dict:
    r = api.get("/ready")
    (status,) = r.json()["replicas"].values()
    return status


def test_reads_come_from_the_replica_and_equal_the_primary(env):
    api, router = env["api"], env["api"].db
    (rep,) = router.replicas
    assert rep.name == f"127.0.0.1:{env['cluster'].replica_port}/carbonledger" and rep.healthy, rep.status()
    on_replica, on_primary = rep.db.statements, router.primary.statements
    head = cursor(env["primary"])
    got = answer(api, env["doc"])
    assert got == answer(env["on_primary"], env["doc"]) and got[0] == head
    assert any(p["holdings"] for k, p in got[1].items() if k.startswith("p")) and got[1]["certificates"]["nodes"]
    assert rep.db.statements > on_replica and router.primary.statements == on_primary  # all of it read the replica
    status = replica_status(api)
    assert status["healthy"] is True and status["lag_s"] is not None
    metrics = api.get("/metrics").text
    assert f'api_replica_healthy{{replica="{rep.name}"}} 1.0' in metrics and "postgres@" not in metrics


def test_meta_reports_what_the_replica_replayed(env):
    from tests.integration.scenario import run_scenario

    api, replica = env["api"], env["replica"]
    (rep,) = api.db.replicas
    with psycopg.connect(replica, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        wait_until = time.monotonic() + 30
        while conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] != "paused":
            assert time.monotonic() < wait_until
            time.sleep(0.05)
        try:
            old = cursor(replica)
            run_scenario(env["w3"], env["dep"], actions=15, seed=6)
            new = index(env)
            assert new > old
            block, data = answer(api, env["doc"])
            assert block == old  # the replayed block, not the primary's
            assert data == answer(env["on_primary"], env["doc"], old)[1]  # ... and the data is as of it
            assert answer(env["on_primary"], env["doc"]) != (block, data)
            assert answer(env["on_primary"], env["doc"])[1] != data  # (the new blocks changed what DOC shows)
            assert rep.healthy  # paused for less than replica_max_lag_s (60 s)
            # A client that pins a block the replica has not replayed (the one it last saw) is answered by the primary.
            on_primary = api.db.primary.statements
            assert answer(api, env["doc"], new) == answer(env["on_primary"], env["doc"], new)
            assert api.db.primary.statements > on_primary

            # Over the lag bound (judged from WAL positions), the replica is skipped: the primary answers.
            api.db.max_lag_s = 0.5
            wait_for(api, lambda: not rep.healthy, "the paused replica to count as lagging")
            status = replica_status(api)
            assert "replay lag" in status["reason"] and status["lag_s"] > 0.5 and status["lag_bytes"] > 0
            assert answer(api, env["doc"]) == answer(env["on_primary"], env["doc"])
        finally:
            api.db.max_lag_s = 60
            conn.execute("SELECT pg_wal_replay_resume()")
    wait_replayed(env)
    wait_for(api, lambda: rep.healthy, "the replica to catch up and be used again")
    before = rep.db.statements
    assert answer(api, env["doc"]) == answer(env["on_primary"], env["doc"])
    assert answer(api, env["doc"])[0] == new and rep.db.statements > before


def test_a_stopped_replica_is_skipped_and_used_again_when_back(env):
    api, cluster = env["api"], env["cluster"]
    (rep,) = api.db.replicas
    expected = answer(env["on_primary"], env["doc"])
    assert answer(api, env["doc"]) == expected  # the pool now holds open connections to the replica
    cluster.stop_replica()
    try:
        # Before the monitor notices: the request's first query finds its connections dead and the server gone,
        # marks the replica down and reads the primary (nothing had been read yet).
        primary_before = api.db.primary.statements
        assert answer(api, env["doc"]) == expected
        assert api.db.primary.statements > primary_before and not rep.healthy
        r = api.get("/ready")  # (its `database` flag comes from the served app's lifespan, not run here)
        status = r.json()["replicas"][rep.name]
        assert status["healthy"] is False and "unreachable" in status["reason"]
        assert "postgres@" not in r.text
        assert f'api_replica_healthy{{replica="{rep.name}"}} 0.0' in api.get("/metrics").text
        wait_for(api, lambda: "unreachable" in replica_status(api)["reason"], "the monitor to see it down")
    finally:
        cluster.start_replica()
    wait_for(api, lambda: rep.healthy, "the restarted replica to be used again")
    before = rep.db.statements
    assert answer(api, env["doc"]) == expected and rep.db.statements > before


BLOCKS_Q = "subscription { blocks(chain: \"dev\") { __typename ... on BlockIndexed { block { number } _meta { block { number } } } } }"


def _paused(url: str):
    """A context: WAL replay paused on the replica at `url` (resumed on exit)."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
            deadline = time.monotonic() + 30
            while conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] != "paused":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            try:
                yield
            finally:
                conn.execute("SELECT pg_wal_replay_resume()")
    return ctx()


@pytest.mark.parametrize("max_lag_s", [60.0, 1.0])
def test_live_messages_wait_for_the_replica_or_read_the_primary(env, max_lag_s):
    """The hub listens on the primary; a block message's `_meta` is read where it is sent from only once that server
    replayed the block: with replay paused, it waits (60 s bound: until replay resumes) or, past the bound (1 s),
    reads the primary. Either way no message shows a `_meta` older than its block."""
    from gqlapi.testing import LiveServer, WsClient
    from tests.integration.scenario import run_scenario

    wait_replayed(env)
    server = LiveServer(env["primary"], read_url=env["replica"], replica_max_lag_s=max_lag_s, replica_check_s=0.2)
    try:
        async def main():
            c = await WsClient(server.ws_url).start()
            await c.subscribe("b", BLOCKS_Q)
            deadline = time.monotonic() + 30
            while len(server.hub.subscribers) != 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            with _paused(env["replica"]):
                await asyncio.to_thread(run_scenario, env["w3"], env["dep"], 3, 7)
                head = await asyncio.to_thread(index, env)
                got = [await c.next("b")] if max_lag_s < 60 else []
                if max_lag_s >= 60:  # nothing is sent while the replica has not replayed it
                    with pytest.raises(asyncio.TimeoutError):
                        await c.next("b", timeout=1.5)
            while not got or got[-1]["blocks"]["block"]["number"] < head:
                got.append(await c.next("b"))
            await c.close()
            return head, got

        head, got = asyncio.run(main())
        for m in got:
            b = m["blocks"]
            assert b["__typename"] == "BlockIndexed" and b["_meta"]["block"]["number"] >= b["block"]["number"], got
        assert got[-1]["blocks"]["block"]["number"] == head
    finally:
        server.close()
        wait_replayed(env)


def test_live_history_is_read_on_the_primary(env):
    """Blocks indexed before a subscription with `since` are no live notice of it: its history must see them, which a
    replica that has not replayed them would not (a silent gap), so history reads the primary."""
    from gqlapi.testing import LiveServer, WsClient
    from tests.integration.scenario import run_scenario

    wait_replayed(env)
    server = LiveServer(env["primary"], read_url=env["replica"], replica_max_lag_s=60, replica_check_s=0.2)
    try:
        async def main():
            with _paused(env["replica"]):
                since = cursor(env["replica"])
                await asyncio.to_thread(run_scenario, env["w3"], env["dep"], 2, 8)
                head = await asyncio.to_thread(index, env)
                c = await WsClient(server.ws_url).start()
                await c.subscribe("b", "subscription($s: SinceInput) { blocks(chain: \"dev\", since: $s) { "
                                  "... on BlockIndexed { block { number } } } }", {"s": {"number": since}})
                got = [await c.next("b") for _ in range(head - since)]
            await c.close()
            return since, head, got

        since, head, got = asyncio.run(main())
        assert head > since and [m["blocks"]["block"]["number"] for m in got] == list(range(since + 1, head + 1))
    finally:
        server.close()
        wait_replayed(env)


def test_start_up_checks_name_a_bad_read_url_and_serve_from_the_primary(env):
    """A standby is refused where writes go (indexer, oracle, migrate); `serve` names a bad read_url without its
    password but starts (reads fall back), and /ready lists each replica by host:port/db."""
    import httpx

    from core.preflight import OperatorError
    from gqlapi.testing import Served
    from store.preflight import check_database, replica_problem
    from tests.pgcluster import free_port

    with pytest.raises(OperatorError, match="read-only standby") as err:
        check_database(env["replica"], writable=True)
    assert "database.url" in err.value.fix
    check_database(env["primary"], writable=True)
    assert replica_problem(env["replica"]) is None
    assert "not a standby" in (replica_problem(env["primary"]) or "")
    dead_port = free_port()
    bad = f"postgresql://reader:s3cret-pw@127.0.0.1:{dead_port}/carbonledger"
    problem = replica_problem(bad) or ""
    assert f"127.0.0.1:{dead_port}" in problem and "s3cret" not in problem

    served = Served(env["primary"], CARBONLEDGER_DATABASE_READ_URL=f'["{env["replica"]}", "{bad}"]',
                    CARBONLEDGER_DATABASE_REPLICA_CHECK_S="0.2")
    try:
        served.wait_ready()
        deadline = time.monotonic() + 30
        while True:
            r = httpx.get(served.base + "/ready", timeout=5).json()
            reps = r["replicas"]
            if reps[f"127.0.0.1:{env['cluster'].replica_port}/carbonledger"]["healthy"]:
                break
            assert time.monotonic() < deadline, r
            time.sleep(0.1)
        assert r["ready"] is True and reps[f"127.0.0.1:{dead_port}/carbonledger"]["healthy"] is False
        body = httpx.post(served.base + "/graphql", json={"query": '{ _meta(chain: "dev") { block { number } } }'},
                          timeout=10).json()
        assert body["data"]["_meta"][0]["block"]["number"] == cursor(env["replica"])
        text = httpx.get(served.base + "/metrics", timeout=5).text + str(r)
        assert "s3cret" not in text and "reader" not in text
        out = served.output()
        assert "read replica not usable" in out and f"127.0.0.1:{dead_port}" in out and "s3cret" not in out, out
    finally:
        served.close()

    # The old way (database.url = a replica) still serves queries, and says why live updates would stay silent.
    served = Served(env["replica"])
    try:
        served.wait_ready()
        out = served.output()
        assert "live updates need the primary" in out and "read-only standby" in out, out
    finally:
        served.close()


def test_reads_go_on_from_the_replica_while_the_primary_is_down(env):
    """With the primary gone the replica's lag cannot be judged: a replica that answers is used (reads survive a
    primary outage), and /ready stays true."""
    api, cluster = env["api"], env["cluster"]
    (rep,) = api.db.replicas
    wait_replayed(env)
    expected = answer(env["on_primary"], env["doc"])
    cluster.stop_server(cluster.primary_dir)
    try:
        rounds = api.db.checks
        wait_for(api, lambda: api.db.checks >= rounds + 3, "three health rounds without the primary")
        assert rep.healthy and rep.lag_s is None  # unknown, not judged
        before = rep.db.statements
        assert answer(api, env["doc"]) == expected and rep.db.statements > before
        r = api.get("/ready")
        assert r.status_code == 200 and r.json()["ready"] is True, r.text
    finally:
        cluster.start_server(cluster.primary_dir)
        cluster.wait_answers(cluster.primary_url)
    wait_for(api, lambda: rep.healthy and rep.lag_s is not None, "the lag to be judged again")


def test_a_conflict_with_recovery_is_a_coded_retryable_error(env):
    """A standby cancels a query that holds up its replay (here: at once, max_standby_streaming_delay = 0, while the
    primary truncates a table the query reads): the session raises ReplicaConflict (SERVICE_BUSY; POST /graphql
    re-runs such a request on the primary, as for a block the replica has not replayed), and the pool serves again."""
    from gqlapi.errors import ReplicaConflict

    api, primary, replica = env["api"], env["primary"], env["replica"]
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute("CREATE TABLE scratch (x int)")
        conn.execute("INSERT INTO scratch VALUES (1)")
    wait_replayed_table = time.monotonic() + 60
    with psycopg.connect(replica, autocommit=True) as conn:
        while conn.execute("SELECT to_regclass('scratch')").fetchone()[0] is None:
            assert time.monotonic() < wait_replayed_table
            time.sleep(0.05)
        conn.execute("ALTER SYSTEM SET max_standby_streaming_delay = 0")
        conn.execute("SELECT pg_reload_conf()")
    try:
        async def main():
            s = api.db.session()
            assert s.db is api.db.replicas[0].db
            try:
                await s.fetch("SELECT 1 FROM scratch")  # the snapshot now holds a lock on scratch
                _truncate_when_running(primary, replica)
                with pytest.raises(ReplicaConflict, match="conflict with recovery") as err:
                    await s.fetch("SELECT pg_sleep(30) FROM scratch")
                return err.value
            finally:
                await s.close()

        err = api.loop.run_until_complete(main())
        assert err.extensions["code"] == "SERVICE_BUSY"
        assert answer(api, env["doc"]) == answer(env["on_primary"], env["doc"])
    finally:
        with psycopg.connect(replica, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET max_standby_streaming_delay")
            conn.execute("SELECT pg_reload_conf()")
        with psycopg.connect(primary, autocommit=True) as conn:
            conn.execute("DROP TABLE scratch")


def _truncate_when_running(primary: str, replica: str) -> None:
    """From a thread: once the replica runs the test's pg_sleep query, TRUNCATE scratch on the primary."""
    import threading

    def go() -> None:
        deadline = time.monotonic() + 60
        with psycopg.connect(replica, autocommit=True) as conn:
            while not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
                                   "query LIKE 'SELECT pg_sleep(30)%%'").fetchone()[0]:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)
        with psycopg.connect(primary, autocommit=True) as conn:
            conn.execute("TRUNCATE scratch")

    threading.Thread(target=go, daemon=True).start()

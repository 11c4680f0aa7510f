"""gqlapi.replicas without a server: names never carry credentials, lag is judged from WAL positions (an idle
primary is no lag), and a request goes to the least busy healthy replica, round robin among equals, else the
primary. (The real streaming replica: tests/integration/test_replica.py.)"""

from __future__ import annotations

import time

from gqlapi.db import Database
from gqlapi.replicas import Router, _lsn, replica_name

URLS = ["postgresql://reader:pw-1@r1.internal:5433/cl", "postgresql://reader:pw-2@r2.internal/cl?sslmode=require"]


def router(**kw) -> Router:
    return Router(Database("postgresql://app:pw-0@primary/cl"), URLS, **kw)


def test_names_show_host_port_and_database_only():
    assert replica_name(URLS[0]) == "r1.internal:5433/cl"
    assert replica_name(URLS[1]) == "r2.internal:5432/cl"
    assert replica_name("postgresql://u:secret@/cl?host=/run/pg") == "/run/pg:5432/cl"
    assert "pw" not in str(router().status())


def test_lsn_text_is_read_as_a_position():
    assert _lsn("0/3000000") == 0x3000000 and _lsn("16/B374D848") == (0x16 << 32) | 0xB374D848 and _lsn(None) is None


def test_lag_is_the_age_of_the_oldest_wal_the_replica_has_not_replayed():
    r = router()
    now = time.monotonic()
    r._samples.extend([(now - 30, 100), (now - 10, 200), (now - 1, 300)])
    assert r._lag(300) == (0.0, 0) and r._lag(400) == (0.0, 0)  # caught up (or ahead of the last sample)
    s, b = r._lag(250)
    assert 0.9 < s < 5 and b == 50  # it misses WAL written since the sample at 300
    s, b = r._lag(150)
    assert 9.9 < s < 15 and b == 150
    # An idle primary adds no samples: a replica at its position stays at lag 0 however long nothing happens.
    r._samples.clear()
    r._samples.append((now - 3600, 500))
    assert r._lag(500) == (0.0, 0)


def test_choice_prefers_the_least_busy_healthy_replica_then_the_primary():
    r = router()
    a, b = r.replicas
    assert r.choose() is r.primary and r.primary_reads == 1  # none checked yet: the primary
    a.up(), b.up()
    picks = [r.choose() for _ in range(4)]
    assert picks == [a.db, b.db, a.db, b.db]  # equals: round robin
    a.db._size = 3  # three connections in use on a
    assert [r.choose() for _ in range(3)] == [b.db] * 3
    b.down("unreachable (OperationalError)")
    assert r.choose() is a.db and r.choose(skip=[a.db]) is r.primary
    a.down("replay lag 12.0 s over database.replica_max_lag_s (10 s)")
    assert r.choose() is r.primary
    assert r.status()["r1.internal:5433/cl"] == {"healthy": False, "lag_s": None, "lag_bytes": None,
                                                 "reason": "replay lag 12.0 s over database.replica_max_lag_s (10 s)"}


def test_without_replicas_sessions_are_the_primarys():
    r = Router(Database("postgresql://app@primary/cl"), [])
    assert r.session().db is r.primary and type(r.session()).__name__ == "Session"
    r2 = router()
    r2.replicas[0].up()
    assert r2.session().db is r2.replicas[0].db and r2.session(primary=True).db is r2.primary

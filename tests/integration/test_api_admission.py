"""Crafted documents cannot stall the API: they are refused with a coded error while other requests are answered
(a real uvicorn server in a subprocess, so a stalled event loop shows as such), and one client flooding new
documents cannot keep everyone else's new documents from being judged. No bound here assumes a fast or slow
machine: waits have deadlines, wall-clock bounds are generous (CPU bounds are in tests/unit/test_gql_guard.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from gqlapi.testing import ApiClient, Served, doubling

NORMAL = "{ _meta { chain } }"
DEADLINE = 60.0  # longest any wait below may take: a stuck server, not a slow machine
STALL = 10.0  # an answer later than this means the server stalled (the time budget is 1 s; the n=40 bomb never ended)
LOAD_CODES = {"TIME_BUDGET_EXCEEDED", "SERVICE_BUSY"}  # answers that depend on how busy the judge was

ATTACKS = {
    # name: (document, variables, expected error code)
    "fragment bomb n=40": (doubling(40), None, "MAX_SELECTIONS_EXCEEDED"),
    "fragment bomb n=18": (doubling(18), None, "MAX_SELECTIONS_EXCEEDED"),
    "bomb through aliases": (doubling(30, leaf="a: _meta { chain } b: _meta { chain }"), None, "MAX_ALIASES_EXCEEDED"),
    "bomb through inline fragments": (doubling(30, spread="... on Query { ...F# } ... on Query { ...F# }"), None,
                                      "MAX_SELECTIONS_EXCEEDED"),
    "bomb behind variables": (doubling(30, spread="...F# @include(if: $v) ...F# @skip(if: $v)",
                                       head="query($v: Boolean!)"), {"v": True}, "MAX_SELECTIONS_EXCEEDED"),
    "fragment cycle": ("query { ...A } fragment A on Query { _meta { chain } ...B } fragment B on Query { ...A }", None,
                       "FRAGMENT_CYCLE"),
    "same field 400 times": ("{ " + " ".join("_meta { chain }" for _ in range(400)) + " }", None, None),
    "many small fragments": ("{ " + " ".join(f"...F{i}" for i in range(150)) + " } "
                             + " ".join(f"fragment F{i} on Query {{ _meta {{ chain }} }}" for i in range(150)), None,
                             None),
    "deep nesting": ("{" + "_meta {" * 150 + " chain" + "}" * 151, None, None),
    "1 MB of comments": (("#" + "x" * 1000 + "\n") * 1000 + "{ __typename }", None, "MAX_QUERY_BYTES_EXCEEDED"),
}


@pytest.fixture()
def served(db_url):
    api = Served(db_url).wait_ready()
    yield api
    api.close()


async def _post(client: httpx.AsyncClient, query: str, variables: dict | None = None) -> tuple[float, httpx.Response]:
    t0 = time.monotonic()
    r = await client.post("/graphql", json={"query": query, "variables": variables})
    return time.monotonic() - t0, r


def _codes(r: httpx.Response) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in r.json().get("errors") or []]


async def _verdict(client: httpx.AsyncClient, query: str, variables: dict | None) -> httpx.Response:
    """The final answer on `query`: asked again while the answer says the judge was busy (the verdict is kept once
    judged, so a later request gets it from the cache)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        r = (await _post(client, query, variables))[1]
        if not LOAD_CODES & set(_codes(r)):
            return r
        assert time.monotonic() < deadline, ("never judged", r.text[:300])
        await asyncio.sleep(0.05)


def test_crafted_documents_are_refused_while_other_requests_are_answered(served):
    """Each crafted document is refused with a clear, coded error (at once with its own code, or, if the judge
    was busy, with a load code, then with its own code when sent again), never stalling the server; normal
    queries sent at the same time are all answered."""

    async def go() -> None:
        async with httpx.AsyncClient(base_url=served.base, timeout=DEADLINE) as client:
            assert (await _post(client, NORMAL))[1].json() == {"data": {"_meta": []}}  # warm
            for name, (query, variables, code) in ATTACKS.items():
                for copy in range(3):  # distinct texts: nothing is answered from a cache
                    text = f"# {copy}\n{query}"
                    attack = asyncio.create_task(_post(client, text, variables))
                    normals = [asyncio.create_task(_post(client, NORMAL)) for _ in range(3)]
                    took, r = await attack
                    assert r.status_code in (200, 400), (name, r.status_code, r.text[:300])
                    errors = r.json().get("errors") or []
                    assert all(e.get("extensions", {}).get("code") for e in errors), (name, errors)
                    if code is not None or errors:
                        assert errors and r.json().get("data") is None, (name, r.text[:300])
                    assert took < STALL, (name, took)
                    if code is not None:
                        assert _codes(r)[0] in {code} | LOAD_CODES, (name, errors)
                        assert _codes(await _verdict(client, text, variables)) == [code], name
                    for t in normals:
                        took_normal, ok = await t
                        assert ok.status_code == 200 and ok.json() == {"data": {"_meta": []}}, (name, ok.text)

    asyncio.run(go())
    assert "Traceback" not in served.output()


def test_get_requests_are_admitted_the_same_way(served):
    deadline = time.monotonic() + DEADLINE
    while True:
        r = httpx.get(served.base + "/graphql", params={"query": doubling(40)}, headers={"accept": "application/json"},
                      timeout=DEADLINE)
        assert r.status_code in (200, 400)
        if not LOAD_CODES & set(_codes(r)) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert _codes(r) == ["MAX_SELECTIONS_EXCEEDED"]


def test_unreadable_json_is_a_client_error_and_logs_no_traceback(served):
    """The review's case: a JSON number of over 4,300 digits (Python's int limit) in variables was a 500 with a
    logged traceback, by POST (the lean path hands what it cannot read to strawberry) and by GET."""
    huge = "1" + "0" * 4400
    body = '{"query": "{ bogus }", "variables": {"a": %s}}' % huge
    post = httpx.post(served.base + "/graphql", content=body, headers={"content-type": "application/json"},
                      timeout=DEADLINE)
    get = httpx.get(served.base + "/graphql", params={"query": "{ bogus }", "variables": '{"a": %s}' % huge},
                    headers={"accept": "application/json"}, timeout=DEADLINE)
    assert (post.status_code, get.status_code) == (400, 400), (post.text[:200], get.text[:200])
    assert httpx.post(served.base + "/graphql", json={"query": NORMAL}).json() == {"data": {"_meta": []}}
    assert "Traceback" not in served.output()


def test_one_client_flooding_new_documents_does_not_starve_the_others(db_url):
    """One client sends 20 new documents at once, each slow to judge (a judge held until the test releases it);
    another client's new document is judged after at most api.admission_per_client of them, and answered; the
    flood's excess is refused at once with SERVICE_BUSY."""
    api = ApiClient(db_url)
    guard = api.app.state.graphql.guard
    calls: list[str] = []
    entered, released = threading.Semaphore(0), threading.Event()
    real_judge = guard.judge

    def judge(query: str):
        calls.append(query)
        if "#slow" in query:
            entered.release()
            assert released.wait(DEADLINE), "never released"
        return real_judge(query)

    guard.judge = judge
    submitted: list[object] = []  # jobs handed to the judging thread (its executor), in order
    real_submit = guard._pool.submit
    guard._pool.submit = lambda fn, *a, **kw: submitted.append(a) or real_submit(fn, *a, **kw)

    def client(address: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app, client=(address, 40000)),
                                 base_url="http://api", timeout=DEADLINE)

    async def until(condition, what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not condition():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.01)

    async def go() -> tuple[list[httpx.Response], httpx.Response]:
        async with client("203.0.113.7") as attacker, client("198.51.100.1") as other:
            flood = [asyncio.create_task(attacker.post("/graphql", json={"query": "#slow %d\n%s" % (i, NORMAL)}))
                     for i in range(20)]
            assert await asyncio.to_thread(entered.acquire, True, DEADLINE), "no judgement started"
            # every flooded request has been either queued for judging or answered
            await until(lambda: len(submitted) + sum(t.done() for t in flood) == 20, "the flood never arrived")
            queued = len(submitted)
            honest = asyncio.create_task(other.post("/graphql", json={"query": "# mine\n" + NORMAL}))
            await until(lambda: len(submitted) > queued or honest.done(), "the other client's document never came")
            released.set()
            return [await t for t in flood], await honest

    try:
        answers, honest = api.loop.run_until_complete(asyncio.wait_for(go(), DEADLINE))
    finally:
        released.set()
        api.close()
    assert calls.index("# mine\n" + NORMAL) <= 4, calls.index("# mine\n" + NORMAL)  # not after all twenty
    assert honest.status_code == 200 and honest.json() == {"data": {"_meta": []}}, honest.text
    busy = [r for r in answers if _codes(r) == ["SERVICE_BUSY"]]
    assert len(busy) == 16 and all(r.status_code in (200, 400) for r in busy), [r.text[:200] for r in answers]
    assert all(r.json() == {"data": {"_meta": []}} for r in answers if r not in busy)
    assert json.loads(busy[0].text)["errors"][0]["message"].startswith("This client")


def test_a_request_waits_for_a_verdict_once(db_url):
    """On the lean path, a request whose document was not judged within the time budget is answered there; it
    used to be handed to strawberry's view, which waited a second time budget for the same judgement."""
    api = ApiClient(db_url, validation_timeout_ms=50)
    guard = api.app.state.graphql.guard
    released = threading.Event()
    real_judge, real_admit = guard.judge, guard.admit
    guard.judge = lambda query: (released.wait(DEADLINE), real_judge(query))[1]
    answers = []

    async def admit(query, scope=None):
        answers.append(await real_admit(query, scope))
        return answers[-1]

    guard.admit = admit
    try:
        r = api.post(NORMAL)
    finally:
        released.set()
    try:
        assert r.status_code == 200 and _codes(r) == ["TIME_BUDGET_EXCEEDED"] and r.json()["data"] is None, r.text
        assert len(answers) == 1
        deadline = time.monotonic() + DEADLINE
        while _codes(r):  # the judgement went on: the document is answered once it is kept
            assert time.monotonic() < deadline, r.text
            r = api.post(NORMAL)
        assert r.json() == {"data": {"_meta": []}}
    finally:
        api.close()

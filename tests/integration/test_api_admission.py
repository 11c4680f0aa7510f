"""Crafted documents cannot stall the API: they are refused with a coded error, quickly, while other requests are
answered (a real uvicorn server in a subprocess, so a stalled event loop shows as such)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from gqlapi.testing import Served

NORMAL = "{ _meta { chain } }"


def doubling(n: int, leaf: str = "_meta { chain }", spread: str = "...F# ...F#") -> str:
    """The issue's document: F1 spreads F2 twice, F2 spreads F3 twice, ... (2^n fields once expanded); `#` in
    `spread` stands for the next fragment's number."""
    body = " ".join(f"fragment F{i} on Query {{ {spread.replace('#', str(i + 1))} }}" for i in range(1, n))
    return f"query {{ ...F1 }} {body} fragment F{n} on Query {{ {leaf} }}"


ATTACKS = {
    # name: (document, variables, expected error code)
    "fragment bomb n=40": (doubling(40), None, "MAX_SELECTIONS_EXCEEDED"),
    "fragment bomb n=18": (doubling(18), None, "MAX_SELECTIONS_EXCEEDED"),
    "bomb through aliases": (doubling(30, leaf="a: _meta { chain } b: _meta { chain }"), None, "MAX_ALIASES_EXCEEDED"),
    "bomb through inline fragments": (doubling(30, spread="... on Query { ...F# } ... on Query { ...F# }"), None,
                                      "MAX_SELECTIONS_EXCEEDED"),
    "bomb behind variables": (doubling(30, spread="...F# @include(if: $v) ...F# @skip(if: $v)")
                              .replace("query {", "query($v: Boolean!) {"), {"v": True}, "MAX_SELECTIONS_EXCEEDED"),
    "fragment cycle": ("query { ...A } fragment A on Query { _meta { chain } ...B } fragment B on Query { ...A }", None,
                       "FRAGMENT_CYCLE"),
    "same field 400 times": ("{ " + " ".join("_meta { chain }" for _ in range(400)) + " }", None, None),
    "many small fragments": ("{ " + " ".join(f"...F{i}" for i in range(150)) + " } "
                             + " ".join(f"fragment F{i} on Query {{ _meta {{ chain }} }}" for i in range(150)), None,
                             None),
    "deep nesting": ("{" + "_meta {" * 150 + " chain" + "}" * 151, None, None),
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


def test_crafted_documents_are_refused_quickly_while_other_requests_are_answered(served):
    """Each crafted document is refused with a clear, coded error within a generous bound (the n=40 bomb stalled
    the server for ever before), and normal queries sent at the same time are all answered."""

    async def go() -> None:
        async with httpx.AsyncClient(base_url=served.base, timeout=20) as client:
            assert (await _post(client, NORMAL))[1].json() == {"data": {"_meta": []}}  # warm
            for name, (query, variables, code) in ATTACKS.items():
                for copy in range(3):  # distinct texts: nothing is answered from a cache
                    attack = asyncio.create_task(_post(client, f"# {copy}\n{query}", variables))
                    normals = [asyncio.create_task(_post(client, NORMAL)) for _ in range(3)]
                    took, r = await attack
                    assert r.status_code in (200, 400), (name, r.status_code, r.text[:300])
                    errors = r.json().get("errors") or []
                    if code is not None or errors:
                        assert errors and r.json().get("data") is None, (name, r.text[:300])
                    if code is not None:
                        assert errors[0]["extensions"]["code"] == code, (name, errors)
                    assert all(e.get("extensions", {}).get("code") for e in errors), (name, errors)
                    assert took < 2.0, (name, took)  # generous for a loaded 2-core box; the bound is tested in CPU time
                    for t in normals:
                        took_normal, ok = await t
                        assert ok.status_code == 200 and ok.json() == {"data": {"_meta": []}}, (name, ok.text)

    asyncio.run(go())
    assert "Traceback" not in served.output()


def test_get_requests_are_admitted_the_same_way(served):
    r = httpx.get(served.base + "/graphql", params={"query": doubling(40)}, headers={"accept": "application/json"},
                  timeout=20)
    assert r.status_code in (200, 400)
    assert r.json()["errors"][0]["extensions"]["code"] == "MAX_SELECTIONS_EXCEEDED"

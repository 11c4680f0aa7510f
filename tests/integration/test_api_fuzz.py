"""Arbitrary argument values (hypothesis) never make the API fail unexpectedly: every root field's every string,
BigInt, Int and list argument, as a variable and as a literal, answers data or a coded client error (never
"Unexpected error.", a 5xx, or a logged traceback). Postgres refuses NUL in text: that is a client error too."""

from __future__ import annotations

import json
import logging

import pytest
from graphql import GraphQLInputObjectType, GraphQLNonNull, Undefined, get_named_type, is_leaf_type
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gqlapi.schema import schema
from gqlapi.testing import ApiClient, World, addr

A = addr(1)
_FILL = {"String": json.dumps(A), "BigInt": '"1"', "Int": "1"}  # required arguments get a value that works


def _slots() -> list[tuple[str, str, str]]:
    """(root field, argument path like `where.chain`, GraphQL type of the slot) for every fuzzable input."""
    out = []
    for fname, field in schema._schema.query_type.fields.items():
        for aname, arg in field.args.items():
            named = get_named_type(arg.type)
            if isinstance(named, GraphQLInputObjectType):
                for iname, ifield in named.fields.items():
                    if get_named_type(ifield.type).name in ("String", "BigInt", "Int"):
                        out.append((fname, f"{aname}.{iname}", str(ifield.type)))
            elif named.name in ("String", "BigInt", "Int"):
                out.append((fname, aname, str(arg.type)))
    return out


SLOTS = _slots()


def _document(field: str, path: str, value: str) -> str:
    """`field` with `value` (GraphQL source: a `$v` or a literal) at `path`, its other required arguments filled."""
    fdef = schema._schema.query_type.fields[field]
    args = []
    top, _, inner = path.partition(".")
    for aname, arg in fdef.args.items():
        if aname == top:
            args.append(f"{aname}: {{ {inner}: {value} }}" if inner else f"{aname}: {value}")
        elif isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined:
            args.append(f"{aname}: {_FILL.get(get_named_type(arg.type).name, '1')}")
    ret = get_named_type(fdef.type)
    selection = "" if is_leaf_type(ret) else " { __typename }"
    return f"{field}({', '.join(args)}){selection}"


def _values(gql_type: str) -> st.SearchStrategy:
    text = st.one_of(st.text(max_size=40), st.sampled_from(["\x00", "a\x00b", "\ud800", "0x" + "ab" * 20 + "\x00",
                                                             "1\x00", "", " ", "x" * 5000, "١٢٣", "²", "1e5", "-0"]))
    gql_type = gql_type.rstrip("!")
    if gql_type.startswith("["):
        return st.lists(text, max_size=4)
    if gql_type == "Int":
        return st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
    if gql_type == "BigInt":
        return st.one_of(text, st.integers(min_value=-(2 ** 300), max_value=2 ** 300).map(str))
    return text


@pytest.fixture()
def api(db_url):
    w = World(db_url)
    w.create_batch(1)
    w.mint(A, 1, 100)
    lid = w.list(A, 1, 10, 5)
    w.buy(addr(2), lid, 3, payment_ref="pi_1")
    w.retire(A, 1, 1)
    client = ApiClient(db_url)
    yield client
    client.close()
    w.close()


def _check(api: ApiClient, caplog: pytest.LogCaptureFixture, query: str, variables: dict | None) -> None:
    before = len(caplog.records)
    body = json.dumps({"query": query, "variables": variables}).encode()  # ASCII: lone surrogates travel escaped
    r = api.loop.run_until_complete(api.http.post("/graphql", content=body, headers={"content-type": "application/json"}))
    assert r.status_code < 500, (query, variables, r.text[:300])
    for e in r.json().get("errors") or []:
        assert e["message"] != "Unexpected error.", (query, variables)
        assert e.get("extensions", {}).get("code"), (query, variables, e)
    logged = [rec for rec in caplog.records[before:] if rec.levelno >= logging.ERROR]
    assert not logged, (query, variables, [rec.getMessage() for rec in logged])


def test_arguments_as_variables_never_fail_unexpectedly(api, caplog):
    caplog.set_level(logging.ERROR)

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data):
        field, path, gql_type = data.draw(st.sampled_from(SLOTS))
        value = data.draw(_values(gql_type))
        query = f"query($v: {gql_type}) {{ {_document(field, path, '$v')} }}"
        _check(api, caplog, query, {"v": value})

    check()


def test_arguments_as_literals_never_fail_unexpectedly(api, caplog):
    caplog.set_level(logging.ERROR)

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data):
        field, path, gql_type = data.draw(st.sampled_from(SLOTS))
        value = data.draw(_values(gql_type))
        literal = str(value) if gql_type.startswith("Int") else json.dumps(value)  # JSON strings are GraphQL strings
        _check(api, caplog, f"{{ {_document(field, path, literal)} }}", None)

    check()


@pytest.mark.parametrize("query", [
    '{ trades(where: {chain: "devnet\\u0000"}) { nodes { buyer } } }',
    '{ portfolio(owner: "%s", chain: "a\\u0000") { owner } }' % A,
    '{ _meta(chain: "\\u0000") { chain } }',
])
def test_nul_in_a_chain_argument_is_a_client_error(api, caplog, query):
    """The issue's case: a NUL in `chain` was "Unexpected error." and a logged traceback."""
    caplog.set_level(logging.ERROR)
    r = api.post(query)
    errors = r.json()["errors"]
    assert r.status_code in (200, 400) and errors[0]["message"] != "Unexpected error."
    assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"] and "NUL" in errors[0]["message"]
    r = api.post(query.replace('"devnet\\u0000"', "$c").replace('"a\\u0000"', "$c").replace('"\\u0000"', "$c")
                 .replace("{ trades", "query($c: String) { trades").replace("{ portfolio", "query($c: String) { portfolio")
                 .replace("{ _meta", "query($c: String) { _meta"), {"c": "x\x00"})
    assert [e["extensions"]["code"] for e in r.json()["errors"]] == ["BAD_USER_INPUT"], r.text
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


def test_a_cursor_carrying_nul_is_a_client_error(api):
    import base64

    cursor = base64.urlsafe_b64encode(json.dumps(["NEWEST", [1, "a\x00", 0]]).encode()).decode()
    r = api.post('{ trades(after: "%s") { nodes { buyer } } }' % cursor)
    assert r.json()["errors"][0]["message"] != "Unexpected error."
    assert [e["extensions"]["code"] for e in r.json()["errors"]] == ["BAD_USER_INPUT"], r.text


UNREADABLE = {
    "4400-digit number": "1" + "0" * 4400,  # Python's int() refuses over 4,300 digits: ValueError, not JSONDecodeError
    "5000-deep array": "[" * 5000 + "]" * 5000,  # json.loads: RecursionError (unless the limit was raised)
}


@pytest.mark.parametrize("raw", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_json_that_cannot_be_read_is_a_client_error(api, caplog, raw):
    """The review's case: a number of over 4,300 digits in `variables` was a 500 (by POST: the lean path hands
    what it cannot read to strawberry's view, which caught only JSONDecodeError; and by GET)."""
    caplog.set_level(logging.INFO)
    for query in ("{ bogus }", "{ _meta { chain } }"):
        post = api.loop.run_until_complete(api.http.post(
            "/graphql", content='{"query": %s, "variables": {"a": %s}}' % (json.dumps(query), raw),
            headers={"content-type": "application/json"}))
        get = api.get("/graphql", params={"query": query, "variables": '{"a": %s}' % raw},
                      headers={"accept": "application/json"})
        for r in (post, get):
            # A client error; or, where this process's recursion limit was raised (other tests do) and the JSON
            # could be read after all, an ordinary GraphQL answer whose errors are coded. Never a 5xx.
            assert r.status_code in (400, 200), (r.status_code, r.text[:200])
            if r.status_code == 200:
                assert all(e.get("extensions", {}).get("code") for e in r.json().get("errors", [])), r.text[:300]
        if raw.startswith("1"):  # the number is never readable: always the client error
            assert (post.status_code, get.status_code) == (400, 400), (post.text[:200], get.text[:200])
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR or rec.exc_info]


def test_an_unexpected_exception_is_a_coded_json_500_without_a_logged_traceback(api, caplog):
    """Whatever escapes the app (here: strawberry's view and a route raising) is answered with a coded JSON 500
    and logged as one line, without a traceback (-v / log_level DEBUG adds it)."""
    from starlette.routing import Route

    async def boom(*args):
        raise RuntimeError("boom")

    caplog.set_level(logging.INFO)
    api.app.state.graphql.fallback = boom  # strawberry's view: GET, and any POST the lean path does not answer
    api.app.router.routes.append(Route("/boom", boom))
    answers = [
        api.post("{ bogus }"),
        api.get("/graphql", params={"query": "{ _meta { chain } }"}, headers={"accept": "application/json"}),
        api.get("/boom"),
    ]
    for r in answers:
        assert r.status_code == 500 and r.headers["content-type"] == "application/json", r.text
        assert r.json() == {"errors": [{"message": "Unexpected error.", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]}
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 3 and not [rec for rec in caplog.records if rec.exc_info]
    assert all("RuntimeError" in rec.getMessage() and "\n" not in rec.getMessage() for rec in errors)
    assert api.get("/metrics").text.count('api_requests_total{status="500"} 2.0') == 1  # both /graphql requests

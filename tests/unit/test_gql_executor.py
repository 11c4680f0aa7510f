"""FastExecutionContext gives exactly graphql-core's results (key order included) and errors,
on a schema built to hit every path."""

from __future__ import annotations

import asyncio
import json

import pytest
import strawberry

from gqlapi.executor import FastExecutionContext


@strawberry.type
class Leaf:
    name: str
    maybe: str | None
    n: int

    @strawberry.field
    def loud(self) -> str:
        return self.name.upper()

    @strawberry.field
    async def later(self) -> int:
        return self.n * 2

    @strawberry.field
    def boom(self) -> str | None:
        raise ValueError("boom")

    @strawberry.field
    def strict_boom(self) -> str:
        raise ValueError("strict boom")


@strawberry.type
class Node:
    id: int
    leaf: Leaf
    opt_leaf: Leaf | None
    leaves: list[Leaf]
    opt_leaves: list[Leaf | None]
    bad_leaf: Leaf  # holds None although non-null: graphql-core must report it


@strawberry.type
class Wrapper:
    node: Node
    nodes: list[Node]
    opt_nodes: list[Node | None] | None


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Tagged(Named):  # implements an interface: graphql-core checks each object with is_type_of
    n: int


@strawberry.type
class Checked:
    """A type whose is_type_of answers with an awaitable (graphql-core awaits it; the fast path must not take it)."""

    n: int

    @classmethod
    def is_type_of(cls, obj, _info) -> bool:  # type: ignore[no-untyped-def]
        async def answer() -> bool:
            return isinstance(obj, cls)
        return answer()  # type: ignore[return-value]


@strawberry.type
class Query:
    @strawberry.field
    def nodes(self) -> list[Node]:
        leaf = lambda i: Leaf(name=f"l{i}", maybe=None if i % 2 else "x", n=i)  # noqa: E731
        return [Node(id=i, leaf=leaf(i), opt_leaf=None if i % 2 else leaf(i + 10), leaves=[leaf(i), leaf(i + 1)],
                     opt_leaves=[None, leaf(i)], bad_leaf=None) for i in range(3)]  # type: ignore[arg-type]

    @strawberry.field
    async def one(self) -> Node:
        return (self.nodes())[0]

    @strawberry.field
    async def resolved_leaves(self) -> list[Leaf | None]:  # a resolver's list, with a null item
        return [Leaf(name="r0", maybe=None, n=0), None, Leaf(name="r2", maybe="y", n=2)]

    @strawberry.field
    def strict_leaves(self) -> list[Leaf]:  # a null where the list's items are non-null
        return [Leaf(name="s0", maybe=None, n=0), None]  # type: ignore[list-item]

    @strawberry.field
    def broken_leaves(self) -> list[Leaf] | None:  # an item whose non-null field holds None
        return [Leaf(name="b0", maybe=None, n=0), Leaf(name=None, maybe=None, n=1)]  # type: ignore[arg-type]

    @strawberry.field
    async def tagged(self) -> list[Tagged | None]:
        return [Tagged(name="t0", n=0), None, Tagged(name="t2", n=2)]

    @strawberry.field
    def mistyped(self) -> list[Tagged]:  # an object of another type where a Tagged is due: is_type_of refuses it
        return [Tagged(name="t0", n=0), Leaf(name="l", maybe=None, n=1)]  # type: ignore[list-item]

    @strawberry.field
    def with_error(self) -> list[Leaf | None]:  # an item that is an exception: graphql-core raises it at its path
        return [ValueError("bad item"), Leaf(name="e1", maybe=None, n=1)]  # type: ignore[list-item]

    @strawberry.field
    def with_awaitable(self) -> list[Leaf]:  # an item that is awaitable: graphql-core awaits it
        async def later() -> Leaf:
            return Leaf(name="a0", maybe=None, n=0)
        return [later(), Leaf(name="a1", maybe=None, n=1)]  # type: ignore[list-item]

    @strawberry.field
    def generated(self) -> list[Leaf]:  # not a list: graphql-core iterates it once (a null where items are non-null)
        return (x for x in [Leaf(name="g0", maybe=None, n=0), None])  # type: ignore[return-value]

    @strawberry.field
    def checked(self) -> list[Checked]:
        return [Checked(n=1), Checked(n=2)]

    @strawberry.field
    def wrapper(self) -> Wrapper:
        ns = self.nodes()
        return Wrapper(node=ns[1], nodes=ns, opt_nodes=[None, ns[0]])


QUERIES = [
    "{ nodes { id leaf { name maybe n loud later } optLeaf { name } leaves { name later } optLeaves { name n } } }",
    "{ nodes { a: id b: id leaf { ...F } } } fragment F on Leaf { name __typename n }",
    "query($s: Boolean!) { nodes { id @skip(if: $s) leaf { name @include(if: $s) n } } }",
    "{ nodes { id leaves { name boom } } }",
    "{ nodes { id leaves { name strictBoom } } }",
    "{ nodes { id optLeaves { name strictBoom } } }",
    "{ nodes { id badLeaf { name } } }",
    "{ one { id optLeaf { name later } leaves { later } } }",
    "{ one { badLeaf { name } } }",
    "{ wrapper { node { __typename id leaf { __typename name maybe n } leaves { name } optLeaf { n } } } }",
    "{ wrapper { nodes { id optLeaves { name } } optNodes { id leaf { n } } } }",
    "{ wrapper { node { id badLeaf { name } } } }",
    "{ wrapper { nodes { id leaf { name later } } } }",
    "{ wrapper { optNodes { id badLeaf { name } } } }",
    "query($s: Boolean!) { wrapper { nodes { ...N } node { leaves { name n @skip(if: $s) } } } } "
    "fragment N on Node { id leaf @include(if: $s) { name } }",
    "{ resolvedLeaves { name maybe n __typename } }",
    "{ resolvedLeaves { name later } }",
    "{ strictLeaves { name } }",
    "{ brokenLeaves { n name } }",
    "query($s: Boolean!) { resolvedLeaves { name @skip(if: $s) n } }",
    "{ tagged { __typename name n } }",
    "{ mistyped { name n } }",
    "{ withError { __typename } }",
    "{ withError { name } }",
    "{ withAwaitable { __typename } }",
    "{ withAwaitable { name n } }",
    "{ generated { name } }",
    "{ checked { n } }",
]


@pytest.mark.parametrize("query", QUERIES)
def test_same_results_and_errors_as_graphql_core(query):
    plain = strawberry.Schema(Query)
    fast = strawberry.Schema(Query, execution_context_class=FastExecutionContext)

    async def run(schema):
        r = await schema.execute(query, variable_values={"s": True}, root_value=Query())
        return json.dumps(r.data), sorted((e.message, tuple(e.path or ())) for e in r.errors or [])

    assert asyncio.run(run(fast)) == asyncio.run(run(plain))


@pytest.mark.parametrize("query", QUERIES)
def test_compiled_selections_reused_across_requests_follow_their_variables(query):
    """A cached document's compiled selections serve later requests; with @skip/@include they follow each
    request's variables (such selections are compiled per request)."""
    from strawberry.extensions import ParserCache

    plain = strawberry.Schema(Query)
    fast = strawberry.Schema(Query, execution_context_class=FastExecutionContext, extensions=[lambda: ParserCache(maxsize=8)])

    async def run(schema, s):
        r = await schema.execute(query, variable_values={"s": s}, root_value=Query())
        return json.dumps(r.data), sorted((e.message, tuple(e.path or ())) for e in r.errors or [])

    for s in (True, False, False, True):
        assert asyncio.run(run(fast, s)) == asyncio.run(run(plain, s))


def test_a_resolvers_list_of_plain_objects_is_built_by_compiled_code():
    """The items of a list a resolver returned (a certificate's provenance) do not each go through graphql-core's
    field execution when their selection is made of plain fields."""
    calls: list[str] = []

    class Counting(FastExecutionContext):
        def execute_fields(self, parent_type, *args, **kw):  # type: ignore[no-untyped-def]
            calls.append(parent_type.name)
            return super().execute_fields(parent_type, *args, **kw)

    schema = strawberry.Schema(Query, execution_context_class=Counting)
    r = asyncio.run(schema.execute("{ nodes { id } }", root_value=Query()))  # [Node!]!, the common shape
    assert r.errors is None and [n["id"] for n in r.data["nodes"]] == [0, 1, 2] and calls == ["Query"]
    calls.clear()
    r = asyncio.run(schema.execute("{ resolvedLeaves { name n } }"))
    assert r.errors is None and r.data == {"resolvedLeaves": [{"name": "r0", "n": 0}, None, {"name": "r2", "n": 2}]}
    assert calls == ["Query"]
    calls.clear()
    r = asyncio.run(schema.execute("{ tagged { name n } }"))  # is_type_of checked per object, then compiled code
    assert r.errors is None and r.data == {"tagged": [{"name": "t0", "n": 0}, None, {"name": "t2", "n": 2}]}
    assert calls == ["Query"]
    calls.clear()
    asyncio.run(schema.execute("{ resolvedLeaves { name later } }"))  # a resolver below: the normal path, per item
    assert calls.count("Leaf") == 2

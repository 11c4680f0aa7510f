"""Admission of GraphQL documents: parse with a token limit, cost limits in linear time, then validation.

A document's cost is what it becomes once its fragments are expanded: `fragment F1 on Query { ...F2 ...F2 }`
doubles with every level, so 750 bytes can stand for 2^40 fields. Walking spreads to count (as strawberry's depth
and alias limiters do) then costs exponential time, and graphql-core's own rules (OverlappingFieldsCanBeMerged
compares fields pairwise) cost at least the square of the expanded size. So, before any rule runs:

- every fragment is measured once (fragments in dependency order, each definition's tree walked without
  recursion), and a spread adds its fragment's memoised figures, so measuring is linear in the document;
- a spread cycle is refused (FRAGMENT_CYCLE) before anything follows spreads;
- each operation must stay within `api.max_depth` (field nesting; introspection fields add none, as with
  strawberry's limiter: GraphiQL's query nests `ofType` eight deep), `api.max_aliases` and `api.max_selections`
  (fields, fragment spreads and inline fragments, counted after expansion: the executor's and the validator's
  work both follow it, and a spread counts even when it adds no field, which bounds fragment fan-out).

Only a document within these limits reaches graphql-core's validation, its field-merging rule held to a small
work budget (`api.max_merge_checks`). All of it runs in a worker thread with a time budget, so no document holds
the event loop (tests/unit/test_gql_guard.py measures each part). Errors carry `extensions.code`. Verdicts are
kept in an LRU keyed by the query text, shared by the lean endpoint and strawberry's view (the `Admission`
extension), so a document is parsed and judged once per process, not once per path or per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    Node,
    SelectionSetNode,
    StringValueNode,
    parse,
    specified_rules,
)
from graphql.validation import OverlappingFieldsCanBeMergedRule
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from gqlapi import errors as codes
from gqlapi.convert import bad_text

log = logging.getLogger("gqlapi")
_CACHE_MAX_QUERY = 32_768
_CAP = 1 << 62  # figures saturate here: a doubling chain of a few hundred fragments would otherwise be a huge int


@dataclass(frozen=True)
class DocumentLimits:
    """What one operation may cost once its fragments are expanded, and the field-merging rule's work budget."""

    max_tokens: int = 2000
    max_depth: int = 10
    max_aliases: int = 30
    max_selections: int = 500
    merge_budget: int = 10_000  # work units of graphql-core's OverlappingFieldsCanBeMerged rule


class Cost(NamedTuple):
    selections: int  # fields, spreads and inline fragments after expansion
    depth: int  # deepest field nesting
    aliases: int  # aliased fields after expansion


_ZERO = Cost(0, 0, 0)


class Admitted(NamedTuple):
    """A parsed document (None when it did not parse) and its errors ([] when it may be executed)."""

    document: DocumentNode | None
    errors: list[GraphQLError]


def _error(message: str, code: str, node: Any = None) -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": code})


def _spreads(selection_set: SelectionSetNode) -> list[str]:
    """Names of the fragments spread anywhere inside `selection_set` (iteratively: no recursion limit)."""
    names, stack = [], [selection_set]
    while stack:
        for sel in stack.pop().selections:
            if isinstance(sel, FragmentSpreadNode):
                names.append(sel.name.value)
            elif sel.selection_set is not None:
                stack.append(sel.selection_set)
    return names


def _fragment_order(fragments: dict[str, FragmentDefinitionNode]) -> list[str] | GraphQLError:
    """Fragment names, each after every fragment it spreads; or the error naming a spread cycle."""
    deps = {name: [d for d in dict.fromkeys(_spreads(f.selection_set)) if d in fragments] for name, f in fragments.items()}
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in fragments:
        if root in state:
            continue
        path, stack = [root], [iter(deps[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                done = path.pop()
                stack.pop()
                state[done] = 2
                order.append(done)
            elif state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                return _error("Fragment cycle: " + " → ".join(cycle) + " (a fragment cannot spread itself)",
                              codes.FRAGMENT_CYCLE, fragments[nxt])
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(deps[nxt]))
    return order


def _cost(root: SelectionSetNode, fragment_costs: dict[str, Cost]) -> Cost:
    """The expanded cost of one selection set; the fragments it spreads must already be in `fragment_costs`
    (unknown fragments count as empty: validation reports them)."""
    order, stack = [], [root]
    while stack:  # pre-order: a selection set before the ones nested in it
        s = stack.pop()
        order.append(s)
        stack.extend(sel.selection_set for sel in s.selections
                     if not isinstance(sel, FragmentSpreadNode) and sel.selection_set is not None)
    costs: dict[int, Cost] = {}
    for s in reversed(order):  # nested selection sets first
        n = depth = aliases = 0
        for sel in s.selections:
            if isinstance(sel, FragmentSpreadNode):
                sub = fragment_costs.get(sel.name.value, _ZERO)
                n += 1 + sub.selections
                depth = max(depth, sub.depth)
                aliases += sub.aliases
                continue
            sub = _ZERO if sel.selection_set is None else costs[id(sel.selection_set)]
            n += 1 + sub.selections
            aliases += sub.aliases
            if isinstance(sel, FieldNode):
                if not sel.name.value.startswith("__"):  # introspection (GraphiQL's nests ofType 8 deep) adds no depth
                    depth = max(depth, 1 + sub.depth)
                aliases += sel.alias is not None
            else:  # an inline fragment adds no depth
                depth = max(depth, sub.depth)
        costs[id(s)] = Cost(min(n, _CAP), depth, min(aliases, _CAP))
    return costs[id(root)]


def _name(node: OperationDefinitionNode) -> str:
    return f"Operation '{node.name.value}'" if node.name else "The anonymous operation"


def check_costs(document: DocumentNode, limits: DocumentLimits) -> list[GraphQLError]:
    """The first limit an operation breaks, as a one-error list, in time linear in the document (one error, not
    one per operation: building an error's location scans the source). Fragments are measured for the operations
    that spread them; one no operation spreads is refused by validation (NoUnusedFragments)."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    order = _fragment_order(fragments)
    if isinstance(order, GraphQLError):
        return [order]
    fragment_costs: dict[str, Cost] = {}
    for name in order:
        fragment_costs[name] = _cost(fragments[name].selection_set, fragment_costs)
    for node in document.definitions:
        if not isinstance(node, OperationDefinitionNode):
            continue
        cost = _cost(node.selection_set, fragment_costs)
        what = _name(node)
        if cost.depth > limits.max_depth:
            return [_error(f"{what} exceeds maximum operation depth of {limits.max_depth} "
                           f"(it nests {cost.depth} fields deep once fragments are expanded)", codes.MAX_DEPTH, node)]
        if cost.aliases > limits.max_aliases:
            return [_error(f"{what} uses {_figure(cost.aliases)} aliases once fragments are expanded; "
                           f"at most {limits.max_aliases} aliases are allowed", codes.MAX_ALIASES, node)]
        if cost.selections > limits.max_selections:
            return [_error(f"{what} selects {_figure(cost.selections)} fields and fragments once fragments are "
                           f"expanded; at most {limits.max_selections} are allowed", codes.MAX_SELECTIONS, node)]
    return []


def _figure(n: int) -> str:
    return f"{n}" if n < _CAP else f"over {_CAP}"


class _BudgetedOverlappingFields(OverlappingFieldsCanBeMergedRule):
    """graphql-core's field-merging rule with a smaller work budget than its default (500,000 units, 1-2 s here):
    it compares same-named fields and fragments pairwise, so a document within the other limits can still ask for
    hundreds of thousands of comparisons. Over budget, validation stops with ValidationAbortedError."""

    budget = 10_000

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.rule_context.remaining_complexity_budget = self.budget


def text_errors(document: DocumentNode) -> list[GraphQLError]:
    """String literals no argument can use (convert.bad_text): a clear error now, not a database error later."""
    errors = []
    for node in _string_values(document):
        why = bad_text(node.value)
        if why:
            errors.append(_error(f"String value {why}, which no argument accepts", codes.BAD_USER_INPUT, node))
    return errors


def _string_values(document: DocumentNode) -> list[StringValueNode]:
    out, stack = [], [document]
    while stack:
        node = stack.pop()
        if isinstance(node, StringValueNode):
            out.append(node)
            continue
        for key in node.keys:
            child = getattr(node, key, None)
            if isinstance(child, Node):
                stack.append(child)
            elif isinstance(child, (list, tuple)):
                stack.extend(c for c in child if isinstance(c, Node))
    return out


def variable_errors(variables: Any) -> list[GraphQLError]:
    """Variable values (at any depth) that no text argument can use, as BAD_USER_INPUT errors naming them."""
    if not variables:
        return []
    errors = []
    stack: list[tuple[str, Any]] = [(f"${k}", v) for k, v in variables.items()] if isinstance(variables, dict) else []
    while stack:
        path, v = stack.pop()
        if isinstance(v, str):
            why = bad_text(v)
            if why:
                errors.append(_error(f"Variable '{path}' {why}, which no argument accepts", codes.BAD_USER_INPUT))
        elif isinstance(v, dict):
            stack.extend((f"{path}.{k}", x) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", x) for i, x in enumerate(v))
    return errors


class Guard:
    """Parses, limits and validates documents for one schema; remembers the verdict per query text.

    Judging a new document (parse, limits, validation: ~0.1 s of CPU for a 2,000-token document on the reference
    box) runs in one worker thread, so the event loop keeps answering other requests meanwhile; a request waits for
    it at most `time_budget` seconds, then gets a TIME_BUDGET_EXCEEDED error (the verdict is still cached)."""

    def __init__(self, schema: GraphQLSchema, limits: DocumentLimits, *, time_budget: float = 1.0,
                 cache_size: int = 1024) -> None:
        self.schema, self.limits, self.time_budget, self.cache_size = schema, limits, time_budget, cache_size
        rule = type("OverlappingFieldsCanBeMergedRule", (_BudgetedOverlappingFields,), {"budget": limits.merge_budget})
        self.rules = tuple(rule if r is OverlappingFieldsCanBeMergedRule else r for r in specified_rules)
        self._cache: OrderedDict[str, Admitted] = OrderedDict()
        self._judging: dict[str, asyncio.Future] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gqlapi-admission")

    def cached(self, query: str) -> Admitted | None:
        """The verdict on `query` if it was judged before (no work otherwise)."""
        hit = self._cache.get(query)
        if hit is not None:
            self._cache.move_to_end(query)
        return hit

    async def admit(self, query: str) -> Admitted:
        """The parsed document and its errors (parse, limits, validation); judged off the event loop once."""
        hit = self.cached(query)
        if hit is not None:
            return hit
        loop = asyncio.get_running_loop()
        pending = self._judging.get(query)
        if pending is None or pending.get_loop() is not loop:  # identical documents arriving together: judged once
            pending = loop.run_in_executor(self._pool, self.judge, query)
            self._judging[query] = pending
            pending.add_done_callback(lambda f, q=query: self._settle(q, f))
        try:
            return await asyncio.wait_for(asyncio.shield(pending), self.time_budget)
        except asyncio.TimeoutError:
            return Admitted(None, [_error(
                f"Checking this document took longer than the time budget ({self.time_budget * 1000:.0f} ms); "
                "send a smaller document", codes.TIME_BUDGET)])

    def _settle(self, query: str, future: asyncio.Future) -> None:
        if self._judging.get(query) is future:
            del self._judging[query]
        # A parsed document keeps its source text: long ones (comments, whitespace) are judged per request instead.
        if len(query) <= _CACHE_MAX_QUERY and not future.cancelled() and future.exception() is None:
            self._cache[query] = future.result()
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def judge(self, query: str) -> Admitted:
        """Parse, check limits, validate (synchronously, uncached); never raises."""
        try:
            return self._judge(query)
        except Exception:  # noqa: BLE001 - an answer for the client; the cause for the log
            log.exception("unexpected error admitting a document")
            return Admitted(None, [_error("Unexpected error.", codes.INTERNAL)])

    def _judge(self, query: str) -> Admitted:
        try:
            document = parse(query, max_tokens=self.limits.max_tokens)
        except GraphQLError as e:
            # graphql-core words the token limit as a syntax error; it is a limit (a clear code for clients)
            code = codes.MAX_TOKENS if "tokens. Parsing aborted" in e.message else codes.PARSE_FAILED
            return Admitted(None, [GraphQLError(e.message, source=e.source, positions=e.positions,
                                                extensions={"code": code})])
        errors = check_costs(document, self.limits) or text_errors(document)
        if not errors:
            errors = [_coded(e) for e in validate_document(self.schema, document, self.rules)]
        return Admitted(document, errors)


def _coded(error: GraphQLError) -> GraphQLError:
    """graphql-core's validation errors with a code; its abort (budget or error count) with a clearer message."""
    if isinstance(error, ValidationAbortedError) and error.message == "Validation aborted.":
        return GraphQLError("The document repeats fields or fragments too often to be checked within the "
                            "validation budget; select each field once per selection set",
                            extensions={"code": codes.QUERY_TOO_COMPLEX})
    if not error.extensions:
        error.extensions = {"code": codes.VALIDATION_FAILED}
    return error


class Admission(SchemaExtension):
    """Strawberry's parse and validate steps through a Guard (replaces MaxTokensLimiter, ParserCache,
    ValidationCache and the depth and alias limiters), plus the variables check."""

    def __init__(self, guard: Guard) -> None:
        super().__init__()
        self.guard = guard
        self.errors: list[GraphQLError] = []

    async def on_parse(self) -> Any:  # type: ignore[override]
        ec = self.execution_context
        admitted = await self.guard.admit(ec.query or "")
        if admitted.document is None:
            raise admitted.errors[0]
        ec.graphql_document = admitted.document
        self.errors = admitted.errors
        yield

    def on_validate(self) -> Any:
        ec = self.execution_context
        ec.pre_execution_errors = list(self.errors) or variable_errors(ec.variables)
        yield

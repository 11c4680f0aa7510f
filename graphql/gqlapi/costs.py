"""What a document costs once its fragments are expanded, measured in linear time; and the text checks of its
literals and of variables (checks that need no schema).

A document's cost is what it becomes once its fragments are expanded: `fragment F1 on Query { ...F2 ...F2 }`
doubles with every level, so 750 bytes can stand for 2^40 fields. Walking spreads to count (as strawberry's depth
and alias limiters do) then costs exponential time, and graphql-core's own rules (OverlappingFieldsCanBeMerged
compares fields pairwise) cost at least the square of the expanded size. So, before any rule runs (gqlapi.guard):

- every fragment is measured once (fragments in dependency order, each definition's tree walked without
  recursion), and a spread adds its fragment's memoised figures, so measuring is linear in the document;
- a spread cycle is refused (FRAGMENT_CYCLE) before anything follows spreads;
- each operation must stay within `api.max_depth` (field nesting; introspection fields add none, as with
  strawberry's limiter: GraphiQL's query nests `ofType` eight deep), `api.max_aliases` and `api.max_selections`
  (fields, fragment spreads and inline fragments, counted after expansion: the executor's and the validator's
  work both follow it, and a spread counts even when it adds no field, which bounds fragment fan-out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
)

from gqlapi import errors as codes
from gqlapi.convert import bad_text
from gqlapi.errors import coded

_CAP = 1 << 62  # figures saturate here: a doubling chain of a few hundred fragments would otherwise be a huge int


@dataclass(frozen=True)
class DocumentLimits:
    """What one operation may cost once its fragments are expanded, and the field-merging rule's work budget."""

    max_tokens: int = 2000  # graphql-core counts comments as tokens too
    max_query_bytes: int = 32_768  # UTF-8 bytes of the whole text, checked before parsing
    max_depth: int = 10
    max_aliases: int = 30
    max_selections: int = 500
    merge_budget: int = 10_000  # work units of graphql-core's OverlappingFieldsCanBeMerged rule


class Cost(NamedTuple):
    selections: int  # fields, spreads and inline fragments after expansion
    depth: int  # deepest field nesting
    aliases: int  # aliased fields after expansion


_ZERO = Cost(0, 0, 0)


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
                return coded("Fragment cycle: " + " → ".join(cycle) + " (a fragment cannot spread itself)",
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
            return [coded(f"{what} exceeds maximum operation depth of {limits.max_depth} "
                           f"(it nests {cost.depth} fields deep once fragments are expanded)", codes.MAX_DEPTH, node)]
        if cost.aliases > limits.max_aliases:
            return [coded(f"{what} uses {_figure(cost.aliases)} aliases once fragments are expanded; "
                           f"at most {limits.max_aliases} aliases are allowed", codes.MAX_ALIASES, node)]
        if cost.selections > limits.max_selections:
            return [coded(f"{what} selects {_figure(cost.selections)} fields and fragments once fragments are "
                           f"expanded; at most {limits.max_selections} are allowed", codes.MAX_SELECTIONS, node)]
    return []


def _figure(n: int) -> str:
    return f"{n}" if n < _CAP else f"over {_CAP}"


def text_errors(document: DocumentNode) -> list[GraphQLError]:
    """String literals no argument can use (convert.bad_text): a clear error now, not a database error later."""
    errors = []
    for node in _string_values(document):
        why = bad_text(node.value)
        if why:
            errors.append(coded(f"String value {why}, which no argument accepts", codes.BAD_USER_INPUT, node))
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
                errors.append(coded(f"Variable '{path}' {why}, which no argument accepts", codes.BAD_USER_INPUT))
        elif isinstance(v, dict):
            stack.extend((f"{path}.{k}", x) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", x) for i, x in enumerate(v))
    return errors

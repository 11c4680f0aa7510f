"""A faster field executor: plain fields skip graphql-core's per-field machinery.

graphql-core resolves every field through build_resolve_info -> resolver -> complete_value, ~10-20 µs each;
a portfolio of 100 holdings has over a thousand such fields. Our types are plain dataclasses filled by
from_row(), so a field without a resolver or arguments is just an attribute: a leaf is
`serialize(getattr(obj, name))`, an object (or list of objects) goes straight to its sub-selection, and a
sub-selection made only of such fields is compiled into straight-line Python (one dict literal; ~3x faster than
interpreting a plan) that builds the result dict (a portfolio's holdings with their batches). Compiled functions
are kept per selection node, so a prepared document (gqlapi.endpoint) compiles once, not once per request.
A list a resolver returns (a certificate's provenance) is built by the same compiled code when its items' selection
is plain, after graphql-core's per-object type check (is_type_of, set on types that implement an interface) passed.
Other fields with resolvers, arguments, abstract types, or nulls in non-null positions take graphql-core's normal path,
and errors are located and propagated by graphql-core's own handle_field_error, so results and errors are
unchanged (tests/unit/test_gql_executor.py compares both, across requests and variables).
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from graphql import (FragmentSpreadNode, GraphQLBoolean, GraphQLID, GraphQLInt, GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLString,
                     is_leaf_type, is_non_null_type, located_error)
from graphql.pyutils import Path, Undefined, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gqlapi.errors import RequestTimeout

_SPECS: dict[tuple[int, str, str], tuple[Any, tuple | None]] = {}
# (schema id, type, selection node ids) -> (nodes, compiled function, schema); entries keep what they were built from
# and are checked by identity, so a recycled id never reuses another document's or schema's code.
_COMPILED: dict[tuple, tuple[tuple, Any, Any]] = {}
_COMPILED_MAX = 4096


class _Slow(Exception):
    """A compiled selection met something only the normal path handles (a null in a non-null position)."""


def _unwrap(t: Any) -> tuple[Any, bool]:
    return (t.of_type, True) if isinstance(t, GraphQLNonNull) else (t, False)


def _spec(schema: Any, parent: GraphQLObjectType, name: str) -> tuple | None:
    """("leaf", attr, serialize, non_null) | ("obj", attr, type, object type) | ("list", attr, type, object type,
    item type, item non-null) | None when the field needs the normal path."""
    key = (id(schema), parent.name, name)
    hit = _SPECS.get(key)
    if hit is not None and hit[0] is schema:
        return hit[1]
    spec = None
    fd = parent.fields.get(name)
    sfield = (fd.extensions or {}).get("strawberry-definition") if fd is not None else None
    if fd is not None and not fd.args and getattr(fd.resolve, "_is_default", False) and sfield is not None \
            and not sfield.extensions:
        attr = sfield.python_name
        named, non_null = _unwrap(fd.type)
        if is_leaf_type(named):
            spec = ("leaf", attr, named.serialize, non_null)
        elif isinstance(named, GraphQLObjectType) and named.is_type_of is None:
            spec = ("obj", attr, fd.type, named)
        elif isinstance(named, GraphQLList):
            item, item_nn = _unwrap(named.of_type)
            if isinstance(item, GraphQLObjectType) and item.is_type_of is None:
                spec = ("list", attr, fd.type, item, named.of_type, item_nn)
    _SPECS[key] = (schema, spec)
    return spec


def _check(value: Any) -> Any:
    if value is None or value is Undefined:
        raise _Slow
    return value


def _raise_slow() -> Any:
    raise _Slow


_LEAF_FAST = {
    # serializer -> expression for the serialized value, exact for every input: values that need no conversion
    # are taken as they are, anything else goes through the serializer itself.
    GraphQLString.serialize: "{v} if {v}.__class__ is str else _check({f}({v}))",
    GraphQLID.serialize: "{v} if {v}.__class__ is str else _check({f}({v}))",
    GraphQLBoolean.serialize: "{v} if {v}.__class__ is bool else _check({f}({v}))",
    GraphQLInt.serialize: "{v} if {v}.__class__ is int and -2147483648 <= {v} <= 2147483647 else _check({f}({v}))",
    str: "str({v})",  # BigInt: any int, as a decimal string
}


def _generate(type_name: str, steps: list[tuple]) -> Any:
    """Straight-line Python for one compiled selection: read each attribute once, then one dict literal in field
    order. A null in a non-null position (or a serializer refusing a value) raises _Slow, so the caller falls
    back to graphql-core's path, which produces the exact error."""
    env: dict[str, Any] = {"_Slow": _Slow, "_check": _check, "_raise_slow": _raise_slow, "str": str}
    lines = ["def run(o):"]
    items = []
    for i, (kind, name, attr, f, non_null, item_nn) in enumerate(steps):
        key = repr(name)
        if kind == 3:
            items.append(f"{key}: {attr!r}")
            continue
        v, fn = f"v{i}", f"f{i}"
        env[fn] = f
        lines.append(f"    {v} = o.{attr}")
        if non_null:
            lines.append(f"    if {v} is None: raise _Slow")
        if kind == 0:
            template = _LEAF_FAST.get(f, "_check({f}({v}))")
            expr = template.format(v=v, f=fn)
        elif kind == 1:
            expr = f"{fn}({v})"
        else:
            if item_nn:
                lines.append(f"    if {v} is not None and any(x is None for x in {v}): raise _Slow")
                expr = f"[{fn}(x) for x in {v}]"
            else:
                expr = f"[None if x is None else {fn}(x) for x in {v}]"
        items.append(f"{key}: {expr}" if non_null else f"{key}: None if {v} is None else ({expr})")
    lines.append("    return {" + ", ".join(items) + "}")
    exec(compile("\n".join(lines), f"<gqlapi selection {type_name}>", "exec"), env)  # noqa: S102 - our own code
    return env["run"]


class FastExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's execute_fields with a direct path for plain fields."""

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> list[tuple[str, Any, Any]]:
        """(response name, spec or None, field details) per field; graphql-core reuses the grouped set object
        for every item of a list, so the plan is computed once per list, not once per item."""
        plans = self.__dict__.setdefault("_plans", {})
        key = (parent_type.name, id(grouped_field_set))
        plan = plans.get(key)
        if plan is None or plan[0] is not grouped_field_set:
            fields = [(name, None if details[0].node.arguments else _spec(self.schema, parent_type, details[0].node.name.value),
                       details) for name, details in grouped_field_set.items()]
            plan = plans[key] = (grouped_field_set, fields)
        return plan[1]

    def _compile(self, otype: GraphQLObjectType, details: Any) -> Any:
        """A function obj -> result dict for a selection made only of plain fields (recursively), else None.

        Pure attribute reads and serialization, so running it and falling back on any exception is safe.
        Compiled once per selection *node*, not per request: a prepared document's nodes are the same objects on
        every request (the functions are kept with the nodes they were built from, and checked by identity), so
        the cost of generating code is paid once. A selection whose subtree carries directives (@skip/@include
        depend on variables) is compiled per request only."""
        cache = self.__dict__.setdefault("_compiled", {})
        key = (otype.name, id(details))
        hit = cache.get(key)
        if hit is not None and hit[0] is details:
            return hit[1]
        nodes = tuple(d.node for d in details)
        gkey = (id(self.schema), otype.name, tuple(map(id, nodes)))
        ghit = _COMPILED.get(gkey)
        if ghit is not None and ghit[2] is self.schema and all(a is b for a, b in zip(ghit[0], nodes, strict=True)):
            cache[key] = (details, ghit[1])
            return ghit[1]
        cache[key] = (details, None)  # guards recursion; a cycle means "not compilable"
        fn = self._build(otype, details)
        cache[key] = (details, fn)
        if not self._has_directives(nodes):
            if len(_COMPILED) >= _COMPILED_MAX:
                _COMPILED.clear()
            _COMPILED[gkey] = (nodes, fn, self.schema)
        return fn

    def _has_directives(self, nodes: tuple) -> bool:
        """True when any selection below `nodes` (through fragments) carries a directive."""
        seen: set[str] = set()
        stack = [n.selection_set for n in nodes if n.selection_set is not None]
        while stack:
            for sel in stack.pop().selections:
                if sel.directives:
                    return True
                if isinstance(sel, FragmentSpreadNode):
                    name = sel.name.value
                    if name in seen:
                        continue
                    seen.add(name)
                    frag = self.fragment_definitions.get(name)
                    if frag is None or frag.directives:
                        return True
                    stack.append(frag.selection_set)
                elif sel.selection_set is not None:
                    stack.append(sel.selection_set)
        return False

    def _build(self, otype: GraphQLObjectType, details: Any) -> Any:
        grouped, new_defers, _ = self.collect_subfields(otype, details)
        if new_defers or any(d.defer_usage is not None for fdetails in grouped.values() for d in fdetails):
            return None  # @defer below: incremental delivery is graphql-core's
        steps: list[tuple] = []
        for name, spec, fdetails in self._plan(otype, grouped):
            if fdetails[0].node.name.value == "__typename":
                steps.append((3, name, otype.name, None, False, False))
                continue
            if spec is None:
                return None
            if spec[0] == "leaf":
                steps.append((0, name, spec[1], spec[2], spec[3], False))
                continue
            sub = self._compile(spec[3], fdetails)
            if sub is None:
                return None
            if spec[0] == "obj":
                steps.append((1, name, spec[1], sub, isinstance(spec[2], GraphQLNonNull), False))
            else:
                steps.append((2, name, spec[1], sub, isinstance(spec[2], GraphQLNonNull), spec[5]))

        return _generate(otype.name, steps)

    async def _guard(self, aw: Any, rtype: Any, details: Any, path: Path) -> Any:
        try:
            return await aw
        except Exception as e:  # noqa: BLE001 - located and propagated as graphql-core does
            self.handle_field_error(e, rtype, details, path)
            return None

    async def _gather(self, items: list[Any]) -> list[Any]:
        idx = [i for i, x in enumerate(items) if self.is_awaitable(x)]
        for i, v in zip(idx, await gather_with_cancel(*(items[i] for i in idx)), strict=True):
            items[i] = v
        return items

    def _item(self, otype: Any, itype: Any, details: Any, path: Path, item: Any) -> Any:
        if item is None:
            return None
        try:
            out = self.collect_and_execute_subfields(otype, details, path, item, None)
        except Exception as e:  # noqa: BLE001
            self.handle_field_error(e, itype, details, path)
            return None
        return self._guard(out, itype, details, path) if self.is_awaitable(out) else out

    def _object(self, parent_type: GraphQLObjectType, source: Any, path: Path | None, name: str, details: Any,
                spec: tuple) -> Any:
        """An object or list-of-objects field without a resolver; Undefined when the normal path must take it."""
        value = getattr(source, spec[1], None)
        if value is None:
            return Undefined if isinstance(spec[2], GraphQLNonNull) else None
        if spec[0] == "list" and spec[5] and any(v is None for v in value):
            return Undefined
        compiled = self._compile(spec[3], details)
        if compiled is not None:
            try:
                if spec[0] == "obj":
                    return compiled(value)
                return [None if v is None else compiled(v) for v in value]
            except Exception:  # noqa: BLE001 - fall back: the normal path produces the exact result or error
                pass
        fpath = Path(path, name, parent_type.name)
        try:
            if spec[0] == "obj":
                out = self.collect_and_execute_subfields(spec[3], details, fpath, value, None)
            else:
                out = [self._item(spec[3], spec[4], details, Path(fpath, i, None), v) for i, v in enumerate(value)]
                if any(self.is_awaitable(x) for x in out):
                    out = self._gather(out)
        except Exception as e:  # noqa: BLE001
            self.handle_field_error(e, spec[2], details, fpath)
            return None
        return self._guard(out, spec[2], details, fpath) if self.is_awaitable(out) else out

    def complete_list_value(self, return_type: Any, field_details_list: Any, info: Any, path: Path, result: Any,
                            position_context: Any) -> Any:
        """A resolver's list of plain objects (a certificate's provenance, an order's history) built by the compiled
        selection, as a plain field's list is; anything else (async iterables, @stream, abstract item types, an
        item the compiled code cannot take) goes graphql-core's way."""
        fast = self._plain_list(return_type.of_type, field_details_list, info, result)
        if fast is not None:
            return fast
        return super().complete_list_value(return_type, field_details_list, info, path, result, position_context)

    def _plain_list(self, item_type: Any, details: Any, info: Any, result: Any) -> list[Any] | None:
        if result.__class__ is not list or any(d.node.directives for d in details):
            return None
        deadline = getattr(self.context_value, "deadline", None)
        if deadline is not None and monotonic() > deadline:  # the normal path reports the timeout per object
            return None
        named, item_nn = _unwrap(item_type)
        if not isinstance(named, GraphQLObjectType):
            return None
        compiled = self._compile(named, details)
        if compiled is None:
            return None
        # graphql-core raises an item that is an exception, awaits one that is awaitable, and asks a type that
        # implements an interface (strawberry gives it is_type_of, an isinstance check) whether each object is
        # its own: any such item, or any answer but True, leaves the whole list to graphql-core.
        check, is_awaitable = named.is_type_of, self.is_awaitable
        try:
            for v in result:
                if v is None:
                    continue
                if isinstance(v, Exception) or is_awaitable(v):
                    return None
                if check is not None:
                    answer = check(v, info)
                    if answer is not True:
                        if is_awaitable(answer) and hasattr(answer, "close"):
                            answer.close()  # a coroutine not awaited here; graphql-core asks again
                        return None
            return [compiled(v) if v is not None else (_raise_slow() if item_nn else None) for v in result]
        except Exception:  # noqa: BLE001 - pure reads: the normal path produces the exact result or error
            return None

    def handle_field_error(self, raw_error: Exception, return_type: Any, field_details_list: Any, path: Path) -> None:
        """As graphql-core, except that a request past its time budget reports that once, not once per object."""
        if isinstance(getattr(raw_error, "original_error", None) or raw_error, RequestTimeout):
            if self.__dict__.get("_timed_out"):
                if self.error_propagation and is_non_null_type(return_type):  # the null still propagates
                    raise located_error(raw_error, [d.node for d in field_details_list], path.as_list())
                return
            self._timed_out = True
        super().handle_field_error(raw_error, return_type, field_details_list, path)

    def execute_fields(self, parent_type: GraphQLObjectType, source_value: Any, path: Path | None,
                       grouped_field_set: Any, position_context: Any) -> Any:
        deadline = getattr(self.context_value, "deadline", None)
        if deadline is not None and monotonic() > deadline:  # api.request_timeout_ms: stop completing objects
            raise RequestTimeout(self.context_value.limits.request_timeout_ms)
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, spec, details in self._plan(parent_type, grouped_field_set):
                if spec is not None:
                    if spec[0] == "leaf":
                        try:
                            value = getattr(source_value, spec[1])
                            if value is None:
                                if not spec[3]:
                                    results[response_name] = None
                                    continue
                            else:
                                out = spec[2](value)
                                if out is not None and out is not Undefined:
                                    results[response_name] = out
                                    continue
                        except Exception:  # noqa: BLE001 - the normal path reports it properly
                            pass
                    else:
                        result = self._object(parent_type, source_value, path, response_name, details, spec)
                        if result is not Undefined:
                            results[response_name] = result
                            if is_awaitable(result):
                                awaitable_fields.append(response_name)
                            continue
                result = self.execute_field(parent_type, source_value, details,
                                            Path(path, response_name, parent_type.name), position_context)
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[f] for f in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                f = awaitable_fields[0]
                results[f] = await results[f]
            else:
                done = await gather_with_cancel(*(results[f] for f in awaitable_fields))
                results.update(zip(awaitable_fields, done, strict=True))
            return results

        return get_results()

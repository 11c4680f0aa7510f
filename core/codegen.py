"""Hot-path functions generated once from source the code builds itself.

A backfill runs a few functions per log and per row millions of times; a loop over (column, type, bound) tuples or
ABI fields costs ~1-2 us per call where straight-line code specialised to one table or one event does not. The
source is built from the project's own table layouts, or from ABI types and names that enter it only through
`repr`: never from chain data.
"""

from __future__ import annotations

from typing import Any


def generated(name: str, src: str, env: dict[str, Any] | None = None) -> Any:
    """The function `f` that `src` defines, with `env` as its globals, named `<name>` in tracebacks."""
    env = dict(env or {})
    exec(compile(src, f"<{name}>", "exec"), env)  # noqa: S102 - see the module doc
    return env["f"]

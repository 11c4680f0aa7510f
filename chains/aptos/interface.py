"""The Move package's machine-readable interface (contracts/aptos/interface.json): event structs, entry functions,
views and abort codes. The adapter, the stand-in fullnode and the tests all read this one file, and a unit test
checks it against the Move sources, so the sources and the adapter cannot drift apart silently."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

INTERFACE_PATH = Path(__file__).resolve().parents[2] / "contracts" / "aptos" / "interface.json"


@dataclass(frozen=True)
class EventSpec:
    name: str  # "module::Struct"
    protocol: str  # "Contract:Event"
    fields: tuple[tuple[str, str], ...]  # (field, Move type) in declaration order


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # "module::function"
    protocol: str | None  # "Contract.function" the oracle's intents name it by
    params: tuple[tuple[str, str], ...]  # after the &signer
    returns: tuple[str, ...] = ()
    emits: tuple[str, ...] = ()


@dataclass(frozen=True)
class Interface:
    events: dict[str, EventSpec]
    entry_functions: dict[str, FunctionSpec]
    views: dict[str, FunctionSpec]
    aborts: dict[str, dict[int, tuple[str, str]]]  # module -> reason code -> (constant name, its doc comment)
    already_done: frozenset[str]

    def by_protocol(self, contract: str, function: str) -> FunctionSpec | None:
        want = f"{contract}.{function}"
        for spec in (*self.entry_functions.values(), *self.views.values()):
            if spec.protocol == want:
                return spec
        return None


def _pairs(raw: list) -> tuple[tuple[str, str], ...]:
    return tuple((str(n), str(t)) for n, t in raw)


@functools.lru_cache(maxsize=4)
def load_interface(path: str | None = None) -> Interface:
    doc = json.loads(Path(path or INTERFACE_PATH).read_text())
    events = {n: EventSpec(n, e["protocol"], _pairs(e["fields"])) for n, e in doc["events"].items()}
    fns = {n: FunctionSpec(n, f.get("protocol"), _pairs(f["params"]), emits=tuple(f.get("emits", ())))
           for n, f in doc["entry_functions"].items()}
    views = {n: FunctionSpec(n, f.get("protocol"), _pairs(f["params"]), tuple(f.get("returns", ())))
             for n, f in doc["views"].items()}
    aborts = {m: {int(k): (v[0], v[1]) for k, v in codes.items()} for m, codes in doc["aborts"].items()}
    return Interface(events, fns, views, aborts, frozenset(doc.get("already_done", ())))

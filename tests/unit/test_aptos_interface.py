"""contracts/aptos/interface.json is what the adapter reads; it must say what the Move sources say (the package
cannot be compiled here, so this parse of the sources is the guard against drift)."""

from __future__ import annotations

import re
from pathlib import Path

from chains.aptos.interface import load_interface

SOURCES = Path(__file__).resolve().parents[2] / "contracts" / "aptos" / "sources"
TYPES = {"String": "0x1::string::String"}


def _norm(t: str) -> str:
    t = t.strip()
    return TYPES.get(t, t)


def _fields(body: str) -> list[tuple[str, str]]:
    out = []
    for part in body.split(","):
        if ":" in part:
            name, t = part.split(":", 1)
            out.append((name.strip(), _norm(t)))
    return out


def _modules() -> dict[str, str]:
    return {re.search(r"module carbonledger::(\w+)", f.read_text()).group(1): f.read_text()
            for f in sorted(SOURCES.glob("*.move"))}


def test_events_match_the_sources():
    iface = load_interface()
    found = {}
    for mod, src in _modules().items():
        for m in re.finditer(r"#\[event\]\s*struct (\w+) has [\w, ]+\{([^}]*)\}", src):
            found[f"{mod}::{m.group(1)}"] = _fields(m.group(2))
    assert found.keys() == iface.events.keys()
    for name, fields in found.items():
        assert tuple(fields) == iface.events[name].fields, name


def test_entry_functions_views_and_aborts_match_the_sources():
    iface = load_interface()
    entries, views, aborts = {}, {}, {}
    for mod, src in _modules().items():
        for m in re.finditer(r"public entry fun (\w+)\(\s*\w+: &signer,?([^)]*)\)", src):
            entries[f"{mod}::{m.group(1)}"] = _fields(m.group(2))
        for m in re.finditer(r"#\[view\]\s*(?:///[^\n]*\n\s*)*public fun (\w+)\(([^)]*)\):\s*([\w:<>]+)", src):
            views[f"{mod}::{m.group(1)}"] = (_fields(m.group(2)), _norm(m.group(3)))
        aborts[mod] = {int(c): (n, d) for d, n, c in re.findall(r"/// (.*)\n\s*const (E_\w+): u64 = (\d+);", src)}
    assert entries.keys() == iface.entry_functions.keys()
    for name, params in entries.items():
        assert tuple(params) == iface.entry_functions[name].params, name
    for name, (params, ret) in views.items():
        if name in iface.views:
            assert tuple(params) == iface.views[name].params, name
            assert ret.startswith("Object<") or (ret,) == iface.views[name].returns, name
    assert set(iface.views) <= set(views)
    assert aborts == iface.aborts


def test_every_protocol_event_emitted_by_some_entry_function():
    iface = load_interface()
    emitted = {e for f in iface.entry_functions.values() for e in f.emits}
    assert emitted == set(iface.events)
    for spec in iface.entry_functions.values():
        for ev in spec.emits:
            assert f"event::emit({ev.split('::')[1]} " in _modules()[spec.name.split("::")[0]].replace("{", " ")

"""Layout guards: graphql/ must stay a plain folder so `import graphql` is graphql-core."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_graphql_is_graphql_core():
    import graphql

    assert hasattr(graphql, "graphql_sync"), "graphql resolved to something other than graphql-core"
    assert "site-packages" in (graphql.__file__ or ""), graphql.__file__


def test_no_graphql_package_marker():
    assert not (ROOT / "graphql" / "__init__.py").exists(), "graphql/__init__.py shadows graphql-core"


def test_chain_family_registration_names_missing_methods():
    import pytest

    from chains.base import ChainReader, ChainWriter, register_family

    class HalfReader(ChainReader):
        def chain_id(self) -> int:
            return 1

    class Writer(ChainWriter):
        pass

    with pytest.raises(TypeError) as err:
        register_family("half", HalfReader, Writer)
    msg = str(err.value)
    assert "HalfReader must implement" in msg and "events_at" in msg and "head" in msg
    assert "Writer must implement" in msg and "broadcast" in msg



def test_families_are_found_by_name_and_must_open_from_settings():
    """A family is one package chains.<name>: the daemons load it by its configured name (no branching on it), and
    its reader must say how it is built from settings and how its node is checked."""
    import pytest

    from chains.base import ChainError, ChainReader, load_family, register_family

    for name in ("evm", "substrate", "aptos"):
        fam = load_family(name)
        assert fam.name == name and fam.reader.open.__func__ is not ChainReader.open.__func__
    with pytest.raises(ChainError, match="no package chains.nope"):
        load_family("nope")
    evm = load_family("evm")

    class NoOpen(evm.reader):  # type: ignore[misc,valid-type]
        open = ChainReader.open

    with pytest.raises(TypeError, match="NoOpen must implement open"):
        register_family("half-open", NoOpen, evm.writer)

# Floors, bottom up: a module may import only from its own package or a lower floor (the command line and demo on top;
# indexer, oracle and the API side by side, never importing each other; the ground imports none of the project).
FLOORS = {"core": 0, "chains": 1, "store": 1, "indexer": 2, "oracle": 2, "gqlapi": 2, "carbonledger": 3}
PLACES = {"gqlapi": ROOT / "graphql" / "gqlapi"}


def test_imports_only_point_down():
    import ast

    bad = []
    for pkg, floor in FLOORS.items():
        for f in sorted(PLACES.get(pkg, ROOT / pkg).rglob("*.py")):
            if "migrations" in f.parts:
                continue
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in FLOORS and top != pkg and FLOORS[top] >= floor:
                        bad.append(f"{f.relative_to(ROOT)}:{node.lineno} ({pkg}) imports {name} ({top})")
    assert not bad, "\n".join(bad)

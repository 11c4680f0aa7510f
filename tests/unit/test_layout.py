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

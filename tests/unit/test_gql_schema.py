"""The schema file is fresh, the operations validate, cursors and scalars behave."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GQL = ROOT / "graphql"


def test_schema_graphql_is_fresh():
    from gqlapi.schema import schema

    current = GQL / "schema.graphql"
    assert current.read_text().strip() == str(schema).strip(), (
        "graphql/schema.graphql is stale; refresh it with: "
        "PYTHONPATH=graphql strawberry export-schema gqlapi.schema:schema --output graphql/schema.graphql"
    )


def test_root_fields_are_the_contract():
    from gqlapi.schema import schema

    fields = set(schema._schema.query_type.fields)
    assert {"portfolio", "certificates", "certificate", "provenance", "marketStats", "candles", "listings", "trades",
            "escrowOrders", "qrPayments", "settlements", "iotAnchors", "_meta"} <= fields


@pytest.mark.parametrize("path", sorted((GQL / "operations").glob("*.graphql")), ids=lambda p: p.name)
def test_operations_validate(path):
    from graphql import parse, validate

    from gqlapi.schema import schema

    errors = validate(schema._schema, parse(path.read_text()))
    assert not errors, [e.message for e in errors]


def test_operations_cover_the_frontend_and_auditor_queries():
    names = {p.stem for p in (GQL / "operations").glob("*.graphql")}
    assert {"portfolio", "certificate", "provenance", "market_stats", "candles", "listings", "trades",
            "escrow_orders", "qr", "iot", "meta"} <= names


def test_cursor_roundtrip_and_errors():
    from gqlapi.errors import UserError
    from gqlapi.sql import Order, decode_cursor, encode_cursor

    o = Order("NEWEST", (("a", True), ("b", True)))
    big = 2**255 + 7
    c = encode_cursor(o, [big, "devnet"])
    assert [int(decode_cursor(o, c)[0]), decode_cursor(o, c)[1]] == [big, "devnet"]
    with pytest.raises(UserError, match="malformed cursor"):
        decode_cursor(o, "!!not base64!!")
    with pytest.raises(UserError, match="malformed cursor"):
        decode_cursor(o, encode_cursor(Order("NEWEST", (("a", True),)), [1]))
    with pytest.raises(UserError, match="belongs to orderBy OLDEST"):
        decode_cursor(o, encode_cursor(Order("OLDEST", o.columns), [1, "x"]))


def test_keyset_sql():
    from gqlapi.sql import Order

    params: list = []
    assert Order("X", (("a", True), ("b", True))).keyset([1, 2], params) == "(a, b) < (%s, %s)"
    assert params == [1, 2]
    params = []
    sql = Order("X", (("a", False), ("b", True))).keyset([1, 2], params)
    assert sql == "((a > %s) OR (a = %s AND b < %s))" and params == [1, 1, 2]


def test_page_size_limits():
    from gqlapi.errors import UserError
    from gqlapi.sql import page_size

    assert page_size(None, 100, 1000) == 100
    assert page_size(0, 100, 1000) == 0
    with pytest.raises(UserError, match="first must be ≤ 1000"):
        page_size(1001, 100, 1000)
    with pytest.raises(UserError, match="≥ 0"):
        page_size(-1, 100, 1000)


def test_bigint_scalar_and_inputs():
    from gqlapi.convert import address_arg, checksum, iso
    from gqlapi.errors import UserError
    from gqlapi.scalars import _parse_bigint

    assert _parse_bigint(str(2**256 - 1)) == 2**256 - 1
    for bad in ("1.5", "abc", True, "9" * 100):
        with pytest.raises(UserError):
            _parse_bigint(bad)
    assert checksum("0x" + "ab" * 20) == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    assert address_arg("0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB", "owner") == "0x" + "ab" * 20
    with pytest.raises(UserError, match="owner: not a 0x"):
        address_arg("0x123", "owner")
    assert iso(0) == "1970-01-01T00:00:00Z"


def test_rows_fill_every_field_of_their_types():
    """from_row() skips dataclass __init__ for speed (gqlapi.convert.filled): it must still set every field."""
    import dataclasses

    from gqlapi.types.credit_batch import CreditBatch
    from gqlapi.types.holding import Holding

    row = {"chain": "c", "owner": "0x" + "ab" * 20, "batch_id": 7, "tradable": 5, "listed": 2, "retired": 1,
           "last_price": 3, "valid_from": 9, "b_project_id": "P", "b_vintage": 2024, "b_methodology": "M",
           "b_registry": "R", "b_serial_number": "S", "b_metadata_hash": "0x" + "00" * 32, "b_created_block": 1,
           "b_created_tx": "0x" + "11" * 32, "b_total_minted": 10, "b_total_retired": 1}
    h = Holding.from_row(row)
    for obj in (h, h.batch):
        fields = {f.name for f in dataclasses.fields(obj)}
        assert set(vars(obj)) == fields
        assert obj == type(obj)(**vars(obj))
    assert (h.balance, h.value, h.batch.batch_id) == (7, 21, 7)


@pytest.mark.parametrize("change, ref, expected", [
    (10 ** 18 + 6, 1, "100000000000000000600.00"),
    (-2, 3, "-66.67"),
    (2, 3, "66.67"),
    (1, 32, "3.12"),  # 3.125: half to even
    (3, 32, "9.38"),  # 9.375: half to even
    (-1, 32, "-3.12"),
    (0, 5, "0.00"),
    (1, 3 * 10 ** 77, "0.00"),
    (10 ** 77 - 1, 1, str(10 ** 79 - 100) + ".00"),
    (1, 7, "14.29"),
])
def test_percent_is_exact_and_rounds_half_to_even(change, ref, expected):
    """marketStats.changePercent: integer arithmetic, so 10^18-sized prices keep every digit (float did not)."""
    from gqlapi.convert import percent

    assert percent(change, ref) == expected


def test_iso_times_past_year_9999_use_the_expanded_form_and_agree_with_datetime_before():
    import random
    from datetime import datetime, timezone

    from gqlapi.convert import civil, iso

    assert iso(253402300799) == "9999-12-31T23:59:59Z" and iso(253402300800) == "+010000-01-01T00:00:00Z"
    assert iso(2**40) == "+036812-02-20T00:36:16Z"
    rnd = random.Random(7)
    for t in [0, -1, 951782400, 4107542400, -62135596800, 253402300799] + \
            [rnd.randrange(-62135596800, 253402300800) for _ in range(2000)]:
        dt = datetime.fromtimestamp(t, tz=timezone.utc)
        assert civil(t) == (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second), t

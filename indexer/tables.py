"""Column layouts of the tables the indexer writes, derived once from the SQLAlchemy models.

The hot path writes plain tuples with binary COPY, so it needs each table's column order and Postgres type
names; taking them from the models keeps one source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.sqltypes import BigInteger, Integer, Text

from core.codegen import generated
from store import models
from store.types import Uint256Type


def _pg_type(col) -> str:
    t = col.type
    if isinstance(t, Uint256Type) or isinstance(t, Numeric):
        return "numeric"
    if isinstance(t, (BigInteger, Integer)):
        return "int8" if isinstance(t, BigInteger) else "int4"
    if isinstance(t, JSONB):
        return "jsonb"
    if isinstance(t, Boolean):
        return "bool"
    if isinstance(t, (String, Text)):
        return "text"
    raise TypeError(f"{col.table.name}.{col.name}: no COPY type for {t!r}")


@dataclass(frozen=True)
class Layout:
    name: str
    columns: tuple[str, ...]  # the columns the indexer writes, in COPY order
    types: tuple[str, ...]
    key: tuple[str, ...] = ()  # versioned: the entity key (without chain / valid_from)
    data: tuple[str, ...] = ()  # versioned: the state columns

    @property
    def copy_sql(self) -> str:
        return f"COPY {self.name} ({', '.join(self.columns)}) FROM STDIN (FORMAT BINARY)"


def _layout(model, versioned: bool = False) -> Layout:
    cols = [c for c in model.__table__.columns if c.server_default is None or c.name in ("seq", "funded_offchain", "data", "protocol")]
    cols = [c for c in cols if c.name not in ("created_at", "updated_at")]
    names = tuple(c.name for c in cols)
    types = tuple(_pg_type(c) for c in cols)
    if not versioned:
        return Layout(model.__tablename__, names, types)
    key = tuple(c.name for c in model.__table__.primary_key.columns if c.name not in ("chain", "valid_from"))
    data = tuple(n for n in names if n not in key and n not in ("chain", "valid_from", "valid_to"))
    return Layout(model.__tablename__, names, types, key, data)


EVENTS: dict[str, Layout] = {m.__tablename__: _layout(m) for m in models.EVENT_TABLES}
EVENTS["indexing_error"] = _layout(models.IndexingError)
VERSIONED: dict[str, Layout] = {m.__tablename__: _layout(m, True) for m in models.VERSIONED_TABLES}

CREDIT_BATCH, HOLDING, LISTING, ESCROW_ORDER, AUCTION = "credit_batch", "holding", "listing", "escrow_order", "auction"

# A Marketplace (or Auction) -> wallet movement is a sale, an auction's settlement or an unlisting; the Sold /
# AuctionSettled / Cancelled event after it decides.
LEDGER_KINDS_PENDING = "transfer"


def _version_rows(lay: Layout) -> Any:
    cells = ", ".join("chain" if c == "chain" else "block" if c == "valid_from" else
                      "hist[i + 1][0] if i < last else None" if c == "valid_to" else
                      f"key[{lay.key.index(c)}]" if c in lay.key else f"s[{c!r}]" for c in lay.columns)
    return generated(f"versions {lay.name}", f"""\
def f(chain, key, hist, out):
    last = len(hist) - 1
    for i, (block, s) in enumerate(hist):
        out.append([{cells}])
""")


# Each versioned table's COPY rows for one entity's new versions: VERSION_ROWS[table](chain, key, [(valid_from,
# state), ...], out) appends them to `out`, each closed by the next one's valid_from (the last one left open).
VERSION_ROWS = {name: _version_rows(lay) for name, lay in VERSIONED.items()}

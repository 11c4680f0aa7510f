"""Declarative base and the shape every chain-derived row shares."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from store.types import TYPE_ANNOTATION_MAP, hexstr, int64

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = TYPE_ANNOTATION_MAP


class EventRow:
    """Immutable row born from one log: keyed by (chain, tx_hash, log_index) so a replay is a no-op (ledger_entry, the
    big one, by its position (chain, block_number, log_index, seq): as unique, and cheaper to append to).

    Undo after a reorg to ancestor A: DELETE ... WHERE block_number > A.
    """

    chain: Mapped[str] = mapped_column(primary_key=True, sort_order=-10)
    tx_hash: Mapped[hexstr] = mapped_column(primary_key=True, sort_order=-9)
    log_index: Mapped[int] = mapped_column(primary_key=True, sort_order=-8)
    block_number: Mapped[int64] = mapped_column(index=True)
    block_hash: Mapped[hexstr]
    block_timestamp: Mapped[int64]
    # The transaction's index in its block (EVM transactionIndex, Substrate extrinsic index: "block-index" on
    # explorers); null where the family has none (Aptos: the version is the transaction) or for older rows.
    tx_index: Mapped[int | None] = mapped_column(nullable=True)


class Versioned:
    """Derived state versioned by block range [valid_from, valid_to).

    Current row: valid_to IS NULL. As of block N: valid_from <= N AND (valid_to IS NULL OR valid_to > N).
    Undo to ancestor A: DELETE WHERE valid_from > A; UPDATE SET valid_to = NULL WHERE valid_to > A.
    Subclasses put `valid_from` into their primary key.
    """

    chain: Mapped[str] = mapped_column(primary_key=True, sort_order=-10)
    valid_from: Mapped[int64] = mapped_column(primary_key=True, sort_order=10)
    valid_to: Mapped[int64 | None] = mapped_column(nullable=True, sort_order=11)

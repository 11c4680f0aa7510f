"""The chain-neutral seam: frozen records and the two ABCs every chain family implements.

Core code (indexer handlers, oracle outbox, API) sees only these types. A family is one package `chains.<name>`
whose `reader` module has `register_<name>()`, registering a reader and a writer class with `register_family`;
registration fails loudly, naming any abstract method left unimplemented (and the reader's `open`, which builds it
from a chain's settings). Daemons find a family by its configured name with `load_family`, never by branching on it.
"""

from __future__ import annotations

import abc
import enum
import importlib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec


@dataclass(frozen=True, slots=True)
class Block:
    chain: str
    number: int
    hash: str  # lowercase 0x-hex
    parent_hash: str
    timestamp: int  # unix seconds


class ChainEvent(msgspec.Struct, frozen=True, gc=False):
    """One decoded protocol event.

    A frozen msgspec Struct rather than a frozen dataclass: a backfill makes one per event, and the Struct's
    constructor (C) costs ~0.1 us where the dataclass's cost ~1.7 (~1.0 through its slot descriptors); fields, keyword
    or positional construction, equality and repr are the same. Not tracked by the cyclic collector (gc=False): its
    fields are values (strings, numbers, the decoded arguments' dict) and never lead back to it.

    Position: every family maps its native position onto (block_number, log_index), a total order of the chain's
    events, and (chain, tx_hash, log_index) is the event's row key:
    - EVM: log_index is the log's index in its block, tx_hash the transaction hash.
    - Substrate: log_index is the event's index in its block's `System.Events` (which the runtime emits in
      extrinsic order, so (block, event index) orders like (block, extrinsic index, event index)); tx_hash is the
      extrinsic hash (blake2_256 of its SCALE bytes) or, for an event outside any extrinsic (block initialisation
      or finalisation), the block hash; tx_index is the extrinsic index ("block-index" identifies it on explorers).
    - EVM: tx_index is the log's transactionIndex. A family without one leaves it None (Aptos: the version is the
      transaction). Event rows keep it (`tx_index`), provenance shows it.
    """

    chain: str
    contract: str  # protocol contract name, e.g. "CarbonCredit"
    name: str  # event name as in the ABI, e.g. "Retired"
    args: Mapping[str, Any]  # decoded, ints as int, addresses/bytes32 as lowercase 0x-hex
    block_number: int
    block_hash: str
    block_timestamp: int
    tx_hash: str
    log_index: int
    address: str  # the emitter: an EVM contract address; on Substrate the pallet ("Assets", "System")
    tx_index: int | None = None

    @property
    def position(self) -> tuple[int, int]:
        """The event's place in its chain's total order."""
        return (self.block_number, self.log_index)

    @property
    def key(self) -> str:
        """The registry key handlers are registered under: "Contract:Event"."""
        return f"{self.contract}:{self.name}"


@dataclass(frozen=True, slots=True)
class UndecodableLog:
    """A log from a followed contract that could not be decoded; recorded as an indexing error."""

    chain: str
    contract: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    error: str


@dataclass(frozen=True, slots=True)
class TxRequest:
    """A write intent in chain-neutral form: call `function(*args)` on `contract`."""

    chain: str
    contract: str
    function: str
    args: tuple[Any, ...] = ()
    value: int = 0
    idempotency_key: str | None = None


class TxState(str, enum.Enum):
    UNKNOWN = "unknown"  # never seen by the node
    PENDING = "pending"  # in the mempool
    MINED = "mined"  # included, success
    REVERTED = "reverted"  # included, failed


@dataclass(frozen=True, slots=True)
class TxStatus:
    state: TxState
    tx_hash: str | None = None
    block_number: int | None = None
    block_hash: str | None = None
    confirmations: int = 0
    error: str | None = None


class ChainError(Exception):
    """Base of every adapter error."""


class ChainIdMismatch(ChainError):
    pass


class ReorgTooDeep(ChainError):
    """A reorg reached below the finality depth: stop, alert, rewrite nothing."""


class MaybeSent(Exception):
    """The broadcast's outcome is unknown or the node already has this nonce: check the chain, don't resend blindly."""


class Rejected(Exception):
    """The node refused the transaction (it is not in the pool)."""


@dataclass(frozen=True)
class VerifySource:
    """What `carbonledger verify certificate` needs besides a node to rebuild a certificate of this chain, as the
    API's `Certificate.verification` and the printed certificate write it: the family, the protocol's contract
    addresses (EVM) or package (Aptos), and the first block or version to scan."""

    family: str
    contracts: Mapping[str, str]
    start: int
    package: str | None = None


@dataclass(frozen=True)
class OpenedReader:
    """A reader built from settings, with what the indexer follows: contract name -> address (the names handlers
    compare against, e.g. the marketplace's escrow) and the first block (or version) to index."""

    reader: ChainReader
    addresses: Mapping[str, str]
    start: int


class ChainReader(abc.ABC):
    """Read side of a chain family: heads, blocks and decoded protocol events."""

    chain: str

    @classmethod
    def open(cls, name: str, settings: Any) -> OpenedReader:
        """Build the reader of chain `name` from its `ChainSettings`, checking the node is the configured network
        (a ConfigError otherwise). Every registered family implements it (register_family checks)."""
        raise NotImplementedError

    @classmethod
    def check_node(cls, name: str, settings: Any) -> int:
        """Start-up check: the node answers and is the configured network; returns its chain id (or 0). Raises
        core.preflight.OperatorError. Every registered family implements it (register_family checks)."""
        raise NotImplementedError

    @classmethod
    def verify_source(cls, name: str, settings: Any) -> VerifySource | None:
        """How a third party names this chain's protocol to `carbonledger verify` (offline); None when the family
        cannot be verified from a command line yet (Substrate: its asset mapping lives in the config)."""
        return None

    @classmethod
    def check_settings(cls, name: str, settings: Any) -> None:
        """What the family's reader would refuse in chain `name`'s settings, found without a node (ConfigError naming
        the key): `carbonledger config` and `open` run it. Nothing by default."""

    @abc.abstractmethod
    def chain_id(self) -> int:
        """The network's numeric id as the config names it (EVM: chain id; Substrate: the runtime's SS58 prefix).
        The genesis hash (`block(0)`) is what tells two chains apart for certain."""

    @abc.abstractmethod
    def head(self) -> Block: ...

    @abc.abstractmethod
    def finalized(self, head: Block, depth: int) -> int:
        """Number of the newest final block (node tag where available, else head - depth)."""

    @abc.abstractmethod
    def block(self, number: int) -> Block | None: ...

    @abc.abstractmethod
    def events(self, from_block: int, to_block: int) -> Sequence[ChainEvent | UndecodableLog]:
        """Protocol events in [from_block, to_block], ordered by position (block, log index)."""

    @abc.abstractmethod
    def events_at(self, block: Block) -> Sequence[ChainEvent | UndecodableLog]:
        """Protocol events of exactly this block (by hash, so a reorg cannot mix branches)."""


class ChainWriter(abc.ABC):
    """Write side of a chain family: build, sign, broadcast and follow transactions."""

    chain: str

    @abc.abstractmethod
    def address(self) -> str:
        """The signing account."""

    @abc.abstractmethod
    def next_nonce(self) -> int:
        """The chain's pending nonce for the signer (the sender owns the counter after that)."""

    @abc.abstractmethod
    def sign(self, request: TxRequest, nonce: int, fees: Mapping[str, int] | None = None) -> tuple[str, bytes]:
        """Build and sign; returns (tx hash, raw tx). Pure: nothing is sent."""

    @abc.abstractmethod
    def broadcast(self, raw: bytes) -> str: ...

    @abc.abstractmethod
    def status(self, tx_hash: str) -> TxStatus: ...

    @abc.abstractmethod
    def precheck(self, request: TxRequest) -> str | None:
        """Simulate; None when the write would succeed, else the decoded revert reason."""


@dataclass(frozen=True)
class Family:
    name: str
    reader: type[ChainReader]
    writer: type[ChainWriter]
    extra: Mapping[str, Any] = field(default_factory=dict)


_FAMILIES: dict[str, Family] = {}


def _missing(cls: type, base: type) -> list[str]:
    if not issubclass(cls, base):
        return [f"(not a subclass of {base.__name__})"]
    return sorted(getattr(cls, "__abstractmethods__", ()))


def register_family(name: str, reader: type[ChainReader], writer: type[ChainWriter]) -> Family:
    """Register a chain family; raises TypeError naming whatever the classes fail to implement."""
    problems = []
    for cls, base in ((reader, ChainReader), (writer, ChainWriter)):
        missing = _missing(cls, base)
        if cls is reader and issubclass(cls, ChainReader):
            missing += [m for m in ("check_node", "open") if getattr(cls, m).__func__ is getattr(ChainReader, m).__func__]
        if missing:
            problems.append(f"{cls.__name__} must implement {', '.join(missing)}")
    if problems:
        raise TypeError(f"chain family {name!r} is incomplete: " + "; ".join(problems))
    if not inspect.isclass(reader) or not inspect.isclass(writer):
        raise TypeError("reader and writer must be classes")
    fam = Family(name, reader, writer)
    _FAMILIES[name] = fam
    return fam


def family(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ChainError(f"unknown chain family {name!r}; registered: {sorted(_FAMILIES) or 'none'}") from None


def load_family(name: str) -> Family:
    """The family `name`, registered on first use by importing `chains.<name>.reader` and calling its
    `register_<name>()`."""
    if name not in _FAMILIES:
        try:
            mod = importlib.import_module(f"chains.{name}.reader")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"chains.{name}", f"chains.{name}.reader"):
                raise
            raise ChainError(f"unknown chain family {name!r}: no package chains.{name}") from None
        getattr(mod, f"register_{name}")()
    return family(name)


def families() -> Iterable[str]:
    return tuple(_FAMILIES)

"""Deploy the EVM protocol (CarbonCredit, Marketplace, Escrow, QRPayment, IoTAnchor, Auction) from abis/.

``deployer`` is either an address the node signs for (eth-tester, anvil's unlocked accounts) or an
``eth_account`` ``LocalAccount``, in which case transactions are signed locally and sent raw (real RPCs).
The deployer becomes DEFAULT_ADMIN_ROLE of every contract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import keccak, to_checksum_address
from web3 import Web3

from chains.evm.artifacts import PROTOCOL_CONTRACTS, load_artifact

#: Which contracts define (and check) each operational role.
ROLE_CONTRACTS: dict[str, tuple[str, ...]] = {
    "ISSUER_ROLE": ("CarbonCredit",),
    "ORACLE_ROLE": ("Marketplace", "Escrow", "IoTAnchor", "Auction"),
    "SETTLER_ROLE": ("QRPayment",),
    "ARBITER_ROLE": ("Escrow",),
}

DEFAULT_RECEIPT_TIMEOUT = 120.0
DEFAULT_AUCTION_EXTENSION_S = 300  # a bid in an auction's last 5 minutes moves its end 5 minutes past the bid


def role_id(role: str) -> bytes:
    """The bytes32 role identifier, ``keccak256("<ROLE>_ROLE")``; accepts "ISSUER" or "ISSUER_ROLE"."""
    return keccak(text=_role_name(role))


def _role_name(role: str) -> str:
    name = role.upper()
    if not name.endswith("_ROLE"):
        name += "_ROLE"
    if name not in ROLE_CONTRACTS:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLE_CONTRACTS)}")
    return name


@dataclass(frozen=True)
class ContractDeployment:
    """Where one contract lives: address, the block of its creation (indexer start block) and the tx."""

    address: str
    block_number: int
    tx_hash: str

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "startBlock": self.block_number, "txHash": self.tx_hash}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ContractDeployment":
        return cls(
            address=to_checksum_address(data["address"]),
            block_number=int(data["startBlock"]),
            tx_hash=str(data["txHash"]),
        )


@dataclass(frozen=True)
class Deployment:
    """A deployed protocol on one chain; serialises to ``{"chainId", "contracts": {name: {...}}}``."""

    chain_id: int
    contracts: dict[str, ContractDeployment] = field(default_factory=dict)

    def address(self, name: str) -> str:
        return self.contracts[name].address

    def contract(self, w3: Web3, name: str, abi_name: str | None = None):
        """A web3 contract object for ``name`` (ABI from abis/``abi_name or name``)."""
        return w3.eth.contract(address=self.address(name), abi=load_artifact(abi_name or name)["abi"])

    def to_json(self) -> dict[str, Any]:
        return {
            "chainId": self.chain_id,
            "contracts": {name: c.to_json() for name, c in sorted(self.contracts.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Deployment":
        return cls(
            chain_id=int(data["chainId"]),
            contracts={name: ContractDeployment.from_json(c) for name, c in data["contracts"].items()},
        )

    def write(self, path: Path | str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path | str) -> "Deployment":
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


class _Sender:
    """Sends transactions either through the node's unlocked account or signed by a LocalAccount."""

    def __init__(self, w3: Web3, deployer: Any, timeout: float):
        self.w3 = w3
        self.timeout = timeout
        if isinstance(deployer, str):
            self.address = to_checksum_address(deployer)
            self.account = None
        elif hasattr(deployer, "address") and hasattr(deployer, "sign_transaction"):
            self.address = to_checksum_address(deployer.address)
            self.account = deployer
            self._nonce = w3.eth.get_transaction_count(self.address, "pending")
        else:
            raise TypeError("deployer must be an address string or an eth_account LocalAccount")

    def send(self, call) -> Any:
        """Send a constructor or function call; return its (successful) receipt."""
        if self.account is None:
            tx_hash = call.transact({"from": self.address})
        else:
            tx = call.build_transaction({"from": self.address, "nonce": self._nonce})
            signed = self.account.sign_transaction(tx)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            self._nonce += 1
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction {Web3.to_hex(tx_hash)} reverted")
        return receipt


def deploy_contract(w3: Web3, deployer: Any, name: str, *args: Any, timeout: float = DEFAULT_RECEIPT_TIMEOUT,
                    _sender: _Sender | None = None) -> ContractDeployment:
    """Deploy one contract from abis/``name``.json with constructor ``args``."""
    sender = _sender or _Sender(w3, deployer, timeout)
    art = load_artifact(name)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    receipt = sender.send(factory.constructor(*args))
    return ContractDeployment(
        address=to_checksum_address(receipt["contractAddress"]),
        block_number=int(receipt["blockNumber"]),
        tx_hash=Web3.to_hex(receipt["transactionHash"]),
    )


def deploy_protocol(
    w3: Web3,
    deployer: Any,
    *,
    roles: dict[str, list[str]] | None = None,
    uri: str = "",
    timeout: float = DEFAULT_RECEIPT_TIMEOUT,
    auction_extension_s: int = DEFAULT_AUCTION_EXTENSION_S,
) -> Deployment:
    """Deploy the six protocol contracts and grant the operational roles.

    ``roles`` maps a role ("ISSUER"/"ISSUER_ROLE", ORACLE, SETTLER, ARBITER) to the addresses that get it on
    every contract defining it. A role missing from ``roles`` (or ``roles=None``) goes to the deployer; an
    empty list grants it to nobody. ``uri`` is the ERC-1155 metadata URI of CarbonCredit; ``auction_extension_s``
    the Auction's anti-sniping window (its admin can change it: ``setExtensionWindow``).
    """
    sender = _Sender(w3, deployer, timeout)
    admin = sender.address
    holders: dict[str, list[str]] = {role: [admin] for role in ROLE_CONTRACTS}
    for role, addresses in (roles or {}).items():
        holders[_role_name(role)] = [to_checksum_address(a) for a in addresses]

    contracts: dict[str, ContractDeployment] = {}
    contracts["CarbonCredit"] = deploy_contract(w3, None, "CarbonCredit", admin, uri, _sender=sender)
    contracts["Marketplace"] = deploy_contract(
        w3, None, "Marketplace", admin, contracts["CarbonCredit"].address, _sender=sender
    )
    for name in ("Escrow", "QRPayment", "IoTAnchor"):
        contracts[name] = deploy_contract(w3, None, name, admin, _sender=sender)
    contracts["Auction"] = deploy_contract(
        w3, None, "Auction", admin, contracts["CarbonCredit"].address, auction_extension_s, _sender=sender
    )
    assert set(contracts) == set(PROTOCOL_CONTRACTS)

    for role, names in ROLE_CONTRACTS.items():
        for name in names:
            contract = w3.eth.contract(address=contracts[name].address, abi=load_artifact(name)["abi"])
            for holder in holders[role]:
                sender.send(contract.functions.grantRole(role_id(role), holder))

    return Deployment(chain_id=int(w3.eth.chain_id), contracts=contracts)


def resolved_contracts(settings: Any, chain: str) -> dict[str, Any]:
    """The protocol contracts of an evm chain's settings (`core.config.ChainSettings`): addresses from the config,
    filled from its deployment file where absent. ConfigError names the key that is missing or wrong."""
    from core.config import ConfigError, ContractSettings

    out: dict[str, ContractSettings] = dict(settings.contracts)
    if settings.deployment is not None:
        path = Path(settings.deployment)
        if not path.exists():
            raise ConfigError(f"chains.{chain}.deployment: file {str(path)!r} does not exist (run `carbonledger deploy`)")
        for name, c in Deployment.load(path).contracts.items():
            if name in PROTOCOL_CONTRACTS and (name not in out or out[name].address is None):
                out[name] = ContractSettings(address=c.address, start_block=c.block_number)
    missing = [n for n, c in out.items() if c.address is None]
    if missing:
        raise ConfigError(
            f"chains.{chain}.contracts.{missing[0]}: no address (set `address` or point `deployment` at a deploy file)")
    return out

"""ink! ContractEmitted payloads decoded with the contract's metadata, on recorded vectors (no contracts runtime
runs here): the ERC20 Transfer vector of py-substrate-interface's tests under metadata V0, V1 and V3 (event by
index byte), and ink! v5's flipper (event by signature topic, blake2_256 of "Name(types)")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chains.substrate.accounts import public_key
from chains.substrate.ink import InkDecoder
from chains.substrate.runtime import blake2_256


@pytest.fixture(scope="module")
def substrate_fixtures(fixtures_dir):
    return fixtures_dir / "substrate"


@pytest.mark.parametrize("metadata", ["erc20-v0.json", "erc20-v1.json", "erc20-v3.json"])
def test_recorded_erc20_transfer_decodes_as_recorded(substrate_fixtures, metadata):
    vector = json.loads((substrate_fixtures / "ink_erc20_transfer_event_vector.json").read_text())
    dec = InkDecoder(json.loads((substrate_fixtures / metadata).read_text()))
    name, args = dec.decode(bytes.fromhex(vector["event_data_hex"][2:]))
    want = vector["expected"]
    assert name == want["event"]
    assert args == {"from": public_key(want["from"]), "to": public_key(want["to"]), "value": want["value"]}


def test_ink_v5_events_are_found_by_signature_topic(substrate_fixtures):
    dec = InkDecoder(json.loads((substrate_fixtures / "flipper-v5.json").read_text()))
    assert dec.version == 5
    flipped = "0x" + blake2_256(b"Flipped(bool)").hex()  # the v5 topic rule, computed here, not read back
    assert dec.decode(b"\x01", [flipped]) == ("Flipped", {"value": True})
    assert dec.decode(b"\x07", ["0x" + blake2_256(b"Test(u8)").hex()]) == ("Test", {"test_value": 7})
    with pytest.raises(ValueError, match="signature topic"):
        dec.decode(b"\x01", ["0x" + blake2_256(b"Flipped(u8)").hex()])
    with pytest.raises(ValueError, match="signature topic"):
        dec.decode(b"\x01", [])  # anonymous: nothing says which event it is


def test_bad_payloads_are_value_errors(substrate_fixtures):
    vector = json.loads((substrate_fixtures / "ink_erc20_transfer_event_vector.json").read_text())
    dec = InkDecoder(json.loads((substrate_fixtures / "erc20-v3.json").read_text()))
    data = bytes.fromhex(vector["event_data_hex"][2:])
    for bad in (data[:20], b"\x09" + data[1:], b"", b"\x00" * 20_000):
        with pytest.raises(ValueError):
            dec.decode(bad)


# --------------------------------------------------------------------------- followed ink! contracts in the reader

ESCROW_META = Path(__file__).resolve().parents[2] / "contracts" / "substrate" / "escrow.json"
ESCROW = "0x" + "e5" * 32
BUYER, SELLER = "0x" + "b1" * 32, "0x" + "5e" * 32


def _compact(n: int) -> bytes:
    if n < 64:
        return bytes([n << 2])
    if n < 2**14:
        return ((n << 2) | 1).to_bytes(2, "little")
    return ((n << 2) | 2).to_bytes(4, "little")


def _record(extrinsic: int, contract: str, data: bytes, topics: list[bytes], pallet: int) -> bytes:
    """One System.Events record `Contracts.ContractEmitted(contract, data)` in the SCALE layout of the recorded
    runtime (phase ApplyExtrinsic, pallet and variant index, AccountId32, Vec<u8>, then the record's topics)."""
    return (b"\x00" + extrinsic.to_bytes(4, "little") + bytes([pallet, 4]) + bytes.fromhex(contract[2:])
            + _compact(len(data)) + data + _compact(len(topics)) + b"".join(topics))


def _topic(meta: dict, name: str) -> bytes:
    return bytes.fromhex(next(e for e in meta["spec"]["events"] if e["label"] == name)["signature_topic"][2:])


def _escrow_settings(path: Path = ESCROW_META, role: str = "Escrow", address: str = ESCROW) -> dict:
    from core.config import InkContract

    return {address: InkContract(role=role, metadata=str(path))}


def test_escrow_events_of_a_followed_contract_become_the_order_lifecycle(substrate_fixtures):
    """The whole path on recordings: System.Events bytes in the layout of a real runtime that has the contracts
    pallet (metadata V14 recorded by py-substrate-interface), decoded by the reader's Runtime, mapped by map_block
    with the contract's ink! v5 metadata, then applied by the protocol's own Escrow handlers. The recorded ink!
    ERC20 Transfer of another contract is not followed; a payload of the followed contract that is none of its
    events is an indexing error, not a crash."""
    from chains.base import Block, ChainEvent, UndecodableLog
    from chains.substrate.ink import load_contracts
    from chains.substrate.mapping import Follow, map_block
    from chains.substrate.runtime import Runtime
    from indexer.context import Context, StateCache
    from indexer.registry import load_handlers
    from indexer.tables import ESCROW_ORDER

    rt = Runtime(1, json.loads((substrate_fixtures / "metadata_v14_with_contracts.json").read_text())["metadata_hex"])
    pallet = rt.pallet("Contracts").value["index"]
    meta = json.loads(ESCROW_META.read_text())
    ref = "QKR7ABC123".encode()  # an M-Pesa receipt as the payment reference
    created = (7).to_bytes(16, "little") + bytes.fromhex(BUYER[2:]) + bytes.fromhex(SELLER[2:]) \
        + (5 * 10**12).to_bytes(16, "little") + b"\x33" * 32
    funded = (7).to_bytes(16, "little") + bytes.fromhex(BUYER[2:]) + (5 * 10**12).to_bytes(16, "little") \
        + _compact(len(ref)) + ref
    erc20 = bytes.fromhex(json.loads((substrate_fixtures / "ink_erc20_transfer_event_vector.json").read_text())
                          ["event_data_hex"][2:])
    records = [
        _record(1, ESCROW, created, [_topic(meta, "OrderCreated"), b"\x00" * 32], pallet),
        _record(1, "0x" + "20" * 32, erc20, [], pallet),  # someone else's token: not followed
        _record(2, ESCROW, funded, [_topic(meta, "Funded")], pallet),
        _record(2, ESCROW, b"\x01", [b"\x99" * 32], pallet),  # no event of the contract has this topic
        # valid UTF-8, so scalecodec hands it over as text, not 0x-hex: still the same bytes
        _record(2, ESCROW, (7).to_bytes(16, "little"), [_topic(meta, "Delivered")], pallet),
    ]
    decoded = rt.decode_events("0x" + (_compact(len(records)) + b"".join(records)).hex())
    follow = Follow({}, "0x" + "00" * 32, frozenset(), load_contracts(_escrow_settings(), "sub"))
    extrinsics = ["0x" + "aa" * 10, "0x" + "bb" * 10, "0x" + "cc" * 10]
    out = map_block("sub", Block("sub", 40, "0x" + "4b" * 32, "0x" + "4a" * 32, 1_700_000_000), decoded, extrinsics, rt, follow)

    tx1, tx2 = ("0x" + blake2_256(bytes.fromhex(extrinsics[i][2:])).hex() for i in (1, 2))
    assert out[:2] == [
        ChainEvent("sub", "Escrow", "OrderCreated", {"orderId": 7, "buyer": BUYER, "seller": SELLER,
                                                      "amount": 5 * 10**12, "metadataHash": "0x" + "33" * 32},
                   40, "0x" + "4b" * 32, 1_700_000_000, tx1, 0, "Contracts", 1),
        ChainEvent("sub", "Escrow", "Funded", {"orderId": 7, "payer": BUYER, "amount": 5 * 10**12,
                                                "paymentRef": "QKR7ABC123"},
                   40, "0x" + "4b" * 32, 1_700_000_000, tx2, 2, "Contracts", 2),
    ]
    assert isinstance(decoded[4]["attributes"][1], str) and decoded[4]["attributes"][1][:2] != "0x"
    assert out[3] == ChainEvent("sub", "Escrow", "Delivered", {"orderId": 7}, 40, "0x" + "4b" * 32, 1_700_000_000,
                                tx2, 4, "Contracts", 2)
    assert len(out) == 4 and isinstance(out[2], UndecodableLog), out
    assert (out[2].contract, out[2].log_index, out[2].tx_hash) == ("Escrow", 3, tx2)
    assert "signature topic" in out[2].error

    handlers = load_handlers()
    ctx = Context("sub", StateCache(), {})
    for e in out[:2]:
        ctx.block = e.block_number
        handlers[e.key](e, ctx)
    order = ctx.get(ESCROW_ORDER, (7,))
    assert (order["status"], order["buyer"], order["seller"], order["payment_ref"], order["funded_offchain"]) == \
        ("funded", BUYER, SELLER, "QKR7ABC123", True)
    handlers[out[3].key](out[3], ctx)
    assert ctx.get(ESCROW_ORDER, (7,))["status"] == "delivered"


def test_ink_contract_settings_errors_name_the_key(substrate_fixtures, tmp_path):
    from chains.substrate.ink import load_contracts
    from core.config import ConfigError

    with pytest.raises(ConfigError, match=r"chains\.sub\.ink_contracts\.nope: "):
        load_contracts(_escrow_settings(address="nope"), "sub")
    with pytest.raises(ConfigError, match=r"ink_contracts\.0x[0-9a-f]+\.metadata: cannot read"):
        load_contracts(_escrow_settings(tmp_path / "missing.json"), "sub")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not ink! metadata"):
        load_contracts(_escrow_settings(tmp_path / "bad.json"), "sub")
    # a real contract's metadata that is no escrow: refused at start-up rather than indexing nothing
    with pytest.raises(ConfigError, match="does not declare the Escrow event OrderCreated"):
        load_contracts(_escrow_settings(substrate_fixtures / "erc20-v3.json"), "sub")


# --------------------------------------------------------------------------- the oracle's writes to an ink! escrow

def test_escrow_payment_call_data_is_the_selector_then_scale_arguments():
    """The message's selector is ink!'s rule (first 4 bytes of blake2_256 of the message label), computed here, and
    the arguments are SCALE: order id u128 little-endian, the reference as a length-prefixed UTF-8 string."""
    from chains.substrate.ink import load_contracts

    (contract,) = load_contracts(_escrow_settings(), "sub").values()
    assert contract.missing_messages() == []
    ref = "QKR7ABC123"
    want = blake2_256(b"record_offchain_payment")[:4] + (7).to_bytes(16, "little") + bytes([len(ref) << 2]) + ref.encode()
    assert contract.call_data("recordOffchainPayment", [7, ref]) == want
    with pytest.raises(ValueError):  # an order id u128 cannot carry
        contract.call_data("recordOffchainPayment", [2**128, ref])


@pytest.mark.parametrize("metadata,weight_v2", [("metadata_v14_with_contracts.json", False),
                                                ("metadata_v14_substrate-contracts-node.json", True)])
def test_escrow_payment_is_a_contracts_call_in_the_runtimes_own_shape(substrate_fixtures, metadata, weight_v2):
    """Two recorded runtimes with the contracts pallet: an older one (Weight v1, no storage deposit limit) and
    substrate-contracts-node (Weight v2 and storage_deposit_limit). The oracle's call parameters encode with each
    runtime's Call type and decode back to the escrow, the configured weight and the message's data."""
    from chains.substrate.ink import load_contracts
    from chains.substrate.runtime import Runtime
    from chains.substrate.writer import contract_call_params
    from scalecodec.base import ScaleBytes

    rt = Runtime(1, json.loads((substrate_fixtures / metadata).read_text())["metadata_hex"])
    fields = next(c for c in rt.pallet("Contracts").calls if c.name == "call").value["fields"]
    (contract,) = load_contracts(_escrow_settings(), "sub").values()
    data = contract.call_data("recordOffchainPayment", [7, "QKR7ABC123"])
    params = contract_call_params(fields, rt.config, ESCROW, data, (5_000_000_000, 65_536))
    encoded = rt.config.create_scale_object("Call", metadata=rt.metadata).encode(
        {"call_module": "Contracts", "call_function": "call", "call_args": params})
    call = rt.config.create_scale_object("Call", data=ScaleBytes(bytes(encoded.data)), metadata=rt.metadata).decode()
    assert (call["call_module"], call["call_function"]) == ("Contracts", "call")
    args = {a["name"]: a["value"] for a in call["call_args"]}
    assert public_key(args["dest"]["Id"] if isinstance(args["dest"], dict) else args["dest"]) == ESCROW
    assert args["value"] == 0
    assert args["data"] == "0x" + data.hex()
    if weight_v2:
        assert args["gas_limit"] == {"ref_time": 5_000_000_000, "proof_size": 65_536}
        assert "storage_deposit_limit" in args and args["storage_deposit_limit"] is None
    else:
        assert args["gas_limit"] == 5_000_000_000 and "storage_deposit_limit" not in args


def test_escrow_without_the_oracles_message_and_two_escrows_are_refused(tmp_path):
    from chains.substrate.ink import load_contracts
    from core.config import ConfigError, InkContract

    meta = json.loads(ESCROW_META.read_text())
    meta["spec"]["messages"] = []  # the events only: indexable, but the oracle has nothing to call
    (tmp_path / "events-only.json").write_text(json.dumps(meta))
    (contract,) = load_contracts(_escrow_settings(tmp_path / "events-only.json"), "sub").values()
    assert contract.missing_messages() == ["record_offchain_payment(order_id, payment_ref)"]
    two = {ESCROW: InkContract(role="Escrow", metadata=str(ESCROW_META)),
           "0x" + "e6" * 32: InkContract(role="Escrow", metadata=str(ESCROW_META))}
    with pytest.raises(ConfigError, match=r"ink_contracts\.0x(e6)+: a second Escrow contract on this chain"):
        load_contracts(two, "sub")
    with pytest.raises(ValueError, match="between 1 and 2"):
        InkContract(role="Escrow", metadata="x.json", gas_limit=(0, 1))

"""ink! ContractEmitted payloads decoded with the contract's metadata, on recorded vectors (no contracts runtime
runs here): the ERC20 Transfer vector of py-substrate-interface's tests under metadata V0, V1 and V3 (event by
index byte), and ink! v5's flipper (event by signature topic, blake2_256 of "Name(types)")."""

from __future__ import annotations

import json

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

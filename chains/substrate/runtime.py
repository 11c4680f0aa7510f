"""A Substrate runtime's metadata and the decoders built from it (scalecodec), one per runtime spec version.

A block's events and extrinsics are encoded by the runtime that executed the block: the `:code` of its parent's
state. `System.LastRuntimeUpgrade` in the block's own state names that runtime (frame_executive writes it at the
start of the first block the new code runs), so the reader learns each block's spec version from the same storage
query that brings its events, and fetches the metadata once per version, at the parent block. A runtime upgrade in
the middle of a range therefore decodes each side with its own metadata.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import xxhash
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes, ScalePrimitive
from scalecodec.type_registry import load_type_registry_preset

from chains.rpc import RpcError


def twox128(data: bytes) -> bytes:
    return b"".join(xxhash.xxh64(data, seed=s).intdigest().to_bytes(8, "little") for s in (0, 1))


def storage_key(pallet: str, item: str) -> str:
    """The key of a plain storage value: twox128(pallet) ++ twox128(item), 0x-hex."""
    return "0x" + (twox128(pallet.encode()) + twox128(item.encode())).hex()


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


EVENTS_KEY = storage_key("System", "Events")
NOW_KEY = storage_key("Timestamp", "Now")
UPGRADE_KEY = storage_key("System", "LastRuntimeUpgrade")


def compact_u32(raw: bytes) -> int:
    """The leading SCALE Compact<u32> of `raw` (ValueError when it is not one)."""
    if not raw:
        raise ValueError("empty compact")
    mode = raw[0] & 3
    if mode == 0:
        return raw[0] >> 2
    if mode == 1 and len(raw) >= 2:
        return int.from_bytes(raw[:2], "little") >> 2
    if mode == 2 and len(raw) >= 4:
        return int.from_bytes(raw[:4], "little") >> 2
    if mode == 3 and len(raw) >= 5 and (raw[0] >> 2) == 0:
        return int.from_bytes(raw[1:5], "little")
    raise ValueError("malformed compact")


def own_config() -> RuntimeConfigurationObject:
    """A scalecodec configuration (core types) whose classes are its own.

    scalecodec's registry maps type names to module-level classes and stamps `runtime_config` on a class at every
    lookup; a type's objects then resolve their inner type strings through that class attribute. Two
    configurations in one process (a Runtime per spec version, each ink! contract's, substrate-interface's own)
    would make each other's objects look types up in the wrong registry: an ink! contract's message encoded after a
    Runtime was built left `Contracts.call`'s account enum resolving the runtime's type ids in the contract's
    registry ("Decoder class for scale_info::0 not found"). Here every registered class but the primitives is a
    private subclass, so the stamps land on classes only this configuration uses. (Their names carry "::", which
    scalecodec's own registry scan skips, so no other configuration picks them up.)"""
    config = RuntimeConfigurationObject()
    config.update_type_registry(load_type_registry_preset("core"))
    tag = f"carbonledger{id(config):x}::"
    types = config.type_registry["types"]
    for name, cls in list(types.items()):
        # primitives stay shared: they resolve no type strings, and scalecodec tells Vec<u8> by `is U8`
        if isinstance(cls, type) and not issubclass(cls, ScalePrimitive):
            types[name] = type(tag + cls.__name__, (cls,), {})
    return config


class Runtime:
    """One runtime version: its decoded metadata, a type registry and the storage types the reader needs.

    Accounts decode as 0x-hex public keys (no SS58 format is set), so they compare as keys, never as strings."""

    def __init__(self, spec_version: int, metadata_hex: str) -> None:
        self.spec_version = spec_version
        self.config = own_config()
        self.metadata = self.config.create_scale_object("MetadataVersioned", data=ScaleBytes(metadata_hex))
        self.metadata.decode()
        self.config.add_portable_registry(self.metadata)
        self.config.set_active_spec_version_id(spec_version)
        try:  # the decoder of transaction-payment's weights, as substrate-interface sets it
            self.config.create_scale_object("sp_weights::weight_v2::Weight")
            self.config.update_type_registry_types({"Weight": "sp_weights::weight_v2::Weight"})
        except NotImplementedError:
            self.config.update_type_registry_types({"Weight": "WeightV1"})
        # scalecodec builds a new class for every parametrised type it meets (a third of its decoding time);
        # this runtime's registry no longer changes, so each type string's class is built once.
        classes: dict[str, Any] = {}
        build = self.config.get_decoder_class

        def cached(type_string: Any) -> Any:
            if type(type_string) is not str:
                return build(type_string)
            cls = classes.get(type_string)
            if cls is None:
                cls = classes[type_string] = build(type_string)
            return cls

        self.config.get_decoder_class = cached  # type: ignore[method-assign]
        system = self.metadata.get_metadata_pallet("System")
        self.events_type = system.get_storage_function("Events").get_value_type_string()

    def pallet(self, name: str) -> Any:
        return self.metadata.get_metadata_pallet(name)

    def has_call(self, pallet: str, call: str) -> bool:
        p = self.pallet(pallet)
        return p is not None and p.calls is not None and any(c.name == call for c in p.calls)

    def has_event(self, pallet: str, event: str) -> bool:
        p = self.pallet(pallet)
        return p is not None and p.events is not None and any(e.name == event for e in p.events)

    def constant(self, pallet: str, name: str) -> Any:
        p = self.pallet(pallet)
        for c in (p.constants if p is not None else None) or ():
            if c.name == name:
                obj = self.config.create_scale_object(f"scale_info::{c.value['type']}",
                                                      data=ScaleBytes(bytes(c.constant_value)))
                return obj.decode()
        raise KeyError(f"{pallet}.{name}")

    def decode_events(self, raw_hex: str) -> list[dict[str, Any]]:
        """The block's `System.Events`, in order (ValueError naming the problem when they do not decode)."""
        try:
            obj = self.config.create_scale_object(self.events_type, data=ScaleBytes(raw_hex), metadata=self.metadata)
            records = obj.decode()
        except Exception as exc:  # noqa: BLE001 - scalecodec raises many types on bad bytes
            raise ValueError(f"System.Events do not decode with runtime {self.spec_version}: "
                             f"{type(exc).__name__}: {str(exc)[:200]}") from None
        if not isinstance(records, list) or obj.data.offset != len(obj.data.data):
            raise ValueError(f"System.Events do not decode with runtime {self.spec_version}: trailing bytes")
        return records

    def decode_extrinsic(self, raw_hex: str) -> dict[str, Any]:
        try:
            obj = self.config.create_scale_object("Extrinsic", data=ScaleBytes(raw_hex), metadata=self.metadata)
            return obj.decode()
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"extrinsic does not decode with runtime {self.spec_version}: "
                             f"{type(exc).__name__}: {str(exc)[:200]}") from None


class Runtimes:
    """Runtime objects by spec version, built on first use (metadata decoding takes seconds: once per version)."""

    def __init__(self, fetch_metadata: Callable[[str], str]) -> None:
        self._fetch = fetch_metadata  # block hash -> metadata hex (state_getMetadata at that block)
        self._by_version: dict[int, Runtime] = {}
        self._lock = threading.Lock()  # the sync loop and its prefetch thread share one cache

    def get(self, spec_version: int, at_hash: str) -> Runtime:
        """The runtime `spec_version`, its metadata fetched at `at_hash` (a block whose post-state runs it)."""
        rt = self._by_version.get(spec_version)
        if rt is not None:
            return rt
        with self._lock:
            rt = self._by_version.get(spec_version)
            if rt is None:
                raw = self._fetch(at_hash)
                try:
                    rt = Runtime(spec_version, raw)
                except Exception as exc:  # noqa: BLE001 - scalecodec raises many types; the loop retries and says why
                    raise RpcError(-1, f"metadata of runtime {spec_version} at {at_hash[:10]} does not decode: "
                                       f"{type(exc).__name__}: {str(exc)[:200]}", method="state_getMetadata") from None
                self._by_version[spec_version] = rt
            return rt

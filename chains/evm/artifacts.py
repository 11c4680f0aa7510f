"""Load the committed contract artefacts (abis/<Contract>.json) by contract name."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

ABIS_DIR = Path(__file__).resolve().parents[2] / "abis"

PROTOCOL_CONTRACTS = ("CarbonCredit", "Marketplace", "Escrow", "QRPayment", "IoTAnchor", "Auction")


@lru_cache(maxsize=None)
def _load(name: str, abis_dir: str) -> dict:
    path = Path(abis_dir) / f"{name}.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no artefact for contract {name!r} at {path}; run scripts/compile-contracts") from None
    return json.loads(text)


def load_artifact(name: str, abis_dir: Path | str | None = None) -> dict:
    """The artefact dict of contract ``name`` (cached; treat it as read-only)."""
    return _load(name, str(Path(abis_dir) if abis_dir is not None else ABIS_DIR))


def abi(name: str) -> list[dict]:
    """The ABI of contract ``name``."""
    return load_artifact(name)["abi"]


def bytecode(name: str) -> str:
    """The creation bytecode (0x hex) of contract ``name``."""
    return load_artifact(name)["bytecode"]


def deployed_bytecode(name: str) -> str:
    """The runtime bytecode (0x hex) of contract ``name``."""
    return load_artifact(name)["deployedBytecode"]


def clear_cache() -> None:
    """Forget loaded artefacts (e.g. after recompiling)."""
    _load.cache_clear()
    _error_index.cache_clear()


@lru_cache(maxsize=None)
def _error_index(abis_dir: str, contract: str | None) -> dict[bytes, tuple[str, list[dict]]]:
    from eth_utils import function_abi_to_4byte_selector

    index: dict[bytes, tuple[str, list[dict]]] = {}
    paths = sorted(Path(abis_dir).glob("*.json"))
    if contract is not None:
        paths = [Path(abis_dir) / f"{contract}.json"]
    for path in paths:
        for item in json.loads(path.read_text(encoding="utf-8")).get("abi", []):
            if item.get("type") == "error":
                index.setdefault(function_abi_to_4byte_selector(item), (item["name"], item.get("inputs", [])))
    return index


def decode_error(data: bytes | str, contract: str | None = None) -> tuple[str, dict] | None:
    """Decode revert ``data`` as a custom error: ``(name, {arg: value})``.

    Errors of ``contract`` are tried first, then those of every artefact in abis/ (the same signature may
    exist in several contracts with different argument names, e.g. ``NotSeller(uint256,address)``). Also
    decodes ``Error(string)`` (as ``("Error", {"message": ...})``) and ``Panic(uint256)``. Returns None for
    empty or unknown data.
    """
    from eth_abi import decode
    from eth_utils import to_bytes

    raw = to_bytes(hexstr=data) if isinstance(data, str) else bytes(data)
    if len(raw) < 4:
        return None
    selector, body = raw[:4], raw[4:]
    if selector == bytes.fromhex("08c379a0"):
        return "Error", {"message": decode(["string"], body)[0]}
    if selector == bytes.fromhex("4e487b71"):
        return "Panic", {"code": decode(["uint256"], body)[0]}
    entry = None
    if contract is not None:
        entry = _error_index(str(ABIS_DIR), contract).get(selector)
    entry = entry or _error_index(str(ABIS_DIR), None).get(selector)
    if entry is None:
        return None
    name, inputs = entry
    from eth_utils.abi import collapse_if_tuple

    values = decode([collapse_if_tuple(i) for i in inputs], body)
    return name, {i["name"] or f"arg{n}": v for n, (i, v) in enumerate(zip(inputs, values))}


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert data carried by a web3 / eth-tester exception (None if there is none)."""
    import ast

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        data = getattr(exc, "data", None)
        if isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x"):
            return bytes.fromhex(data[2:])
        if isinstance(data, (bytes, bytearray)):
            return bytes(data)
        for arg in getattr(exc, "args", ()):
            # eth-tester: "execution reverted: b'\\x...'"
            if isinstance(arg, str) and arg.startswith("execution reverted: b"):
                try:
                    return bytes(ast.literal_eval(arg[len("execution reverted: "):]))
                except (ValueError, SyntaxError):
                    pass
            if isinstance(arg, (bytes, bytearray)):
                return bytes(arg)
        exc = exc.__cause__ or exc.__context__
    return None

"""Compile the Solidity protocol (contracts/evm) into the committed artefacts in abis/.

The npm ``solc`` package (solcjs) is driven through its standard-JSON interface by
``scripts/solc-standard-json.js``; OpenZeppelin imports resolve from ``node_modules``. Every contract defined
in ``contracts/evm/**/*.sol`` becomes ``abis/<Contract>.json``::

    {"contractName", "abi", "bytecode", "deployedBytecode",
     "compiler": {"solc", "evmVersion", "optimizer"}, "sourceHash"}

Output is deterministic (sorted keys, two-space indentation, trailing newline), so re-running the compiler
on unchanged sources rewrites byte-identical files, and :func:`check_artifacts` can tell a stale artefact.

``evmVersion`` is "cancun": py-evm 0.12.1b1 (eth-tester 0.13.0b1 defaults to Prague) and anvil both run it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = Path("contracts/evm")
ABIS_DIR = Path("abis")
DRIVER = Path("scripts/solc-standard-json.js")

EVM_VERSION = "cancun"
OPTIMIZER = {"enabled": True, "runs": 200}

_OUTPUTS = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"]


class CompileError(RuntimeError):
    """solc reported errors (or could not be run)."""


@dataclass(frozen=True)
class CompileResult:
    """Artefacts by contract name, plus solc's warnings (formatted)."""

    artifacts: dict[str, dict]
    warnings: list[str]


def settings() -> dict:
    """The solc settings used for every build (without the output selection)."""
    return {"evmVersion": EVM_VERSION, "optimizer": dict(OPTIMIZER)}


def source_files(root: Path = ROOT) -> list[Path]:
    """All Solidity sources of the protocol, as sorted paths relative to ``root``."""
    return sorted(p.relative_to(root) for p in (root / CONTRACTS_DIR).rglob("*.sol"))


def node_available(root: Path = ROOT) -> bool:
    """True when node and the npm ``solc`` package are present."""
    return shutil.which("node") is not None and (root / "node_modules" / "solc" / "package.json").is_file()


def build_input(root: Path = ROOT) -> dict:
    """The solc standard-JSON input for all protocol sources."""
    sources = {p.as_posix(): {"content": (root / p).read_text(encoding="utf-8")} for p in source_files(root)}
    if not sources:
        raise CompileError(f"no Solidity sources under {root / CONTRACTS_DIR}")
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {**settings(), "outputSelection": {"*": {"*": _OUTPUTS}}},
    }


def run_solc(standard_input: dict, root: Path = ROOT) -> dict:
    """Run the node driver on ``standard_input`` and return the parsed standard-JSON output."""
    if not node_available(root):
        raise CompileError("node and node_modules/solc are required: run `npm ci`")
    proc = subprocess.run(
        ["node", str(root / DRIVER), str(root)],
        input=json.dumps(standard_input).encode(),
        capture_output=True,
        cwd=root,
        check=False,
    )
    if proc.returncode != 0:
        raise CompileError(f"solc driver failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise CompileError(f"solc driver wrote invalid JSON: {proc.stdout[:500]!r}") from exc


def _source_hash(metadata: dict) -> str:
    """sha256 over the compiler version, settings and the keccak256 of every source the contract uses."""
    payload = {
        "compiler": metadata["compiler"]["version"],
        "settings": settings(),
        "sources": {path: src["keccak256"] for path, src in sorted(metadata["sources"].items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def compile_contracts(root: Path = ROOT) -> CompileResult:
    """Compile every protocol contract; raise :class:`CompileError` on any solc error."""
    root = Path(root).resolve()
    standard_input = build_input(root)
    output = run_solc(standard_input, root)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    warnings = [e.get("formattedMessage", e.get("message", "")) for e in output.get("errors", [])
                if e.get("severity") != "error"]
    artifacts: dict[str, dict] = {}
    for path in standard_input["sources"]:
        for name, out in sorted(output.get("contracts", {}).get(path, {}).items()):
            bytecode = out["evm"]["bytecode"]["object"]
            if not bytecode:  # interfaces and abstract contracts
                continue
            if name in artifacts:
                raise CompileError(f"contract name {name} defined twice")
            metadata = json.loads(out["metadata"])
            artifacts[name] = {
                "contractName": name,
                "abi": out["abi"],
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + out["evm"]["deployedBytecode"]["object"],
                "compiler": {
                    "solc": metadata["compiler"]["version"],
                    "evmVersion": metadata["settings"]["evmVersion"],
                    "optimizer": metadata["settings"]["optimizer"],
                },
                "sourceHash": _source_hash(metadata),
            }
    return CompileResult(artifacts=artifacts, warnings=warnings)


def render(artifact: dict) -> str:
    """The canonical file text of an artefact."""
    return json.dumps(artifact, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_artifacts(artifacts: dict[str, dict], out_dir: Path) -> list[Path]:
    """Write ``<out_dir>/<Contract>.json`` for each artefact; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in sorted(artifacts.items()):
        path = out_dir / f"{name}.json"
        path.write_text(render(artifact), encoding="utf-8")
        written.append(path)
    return written


def stale_artifacts(artifacts: dict[str, dict], abis_dir: Path) -> list[str]:
    """Human-readable problems where ``abis_dir`` differs from freshly compiled ``artifacts``."""
    problems = []
    for name, artifact in sorted(artifacts.items()):
        path = Path(abis_dir) / f"{name}.json"
        if not path.is_file():
            problems.append(f"{name}: {path} is missing")
            continue
        current = path.read_text(encoding="utf-8")
        if current == render(artifact):
            continue
        try:
            old = json.loads(current)
        except json.JSONDecodeError:
            problems.append(f"{name}: {path} is not valid JSON")
            continue
        changed = sorted(k for k in set(old) | set(artifact) if old.get(k) != artifact.get(k))
        problems.append(f"{name}: {path} is stale (differs in {', '.join(changed) or 'formatting'})")
    return problems


def check_artifacts(root: Path = ROOT, abis_dir: Path | None = None) -> list[str]:
    """Recompile and compare with ``abis_dir`` (default ``<root>/abis``); empty list means up to date."""
    root = Path(root).resolve()
    return stale_artifacts(compile_contracts(root).artifacts, abis_dir or root / ABIS_DIR)


def main(argv: list[str] | None = None) -> int:
    """CLI: compile into abis/ (or ``--out``), or ``--check`` that abis/ is up to date."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="compile-contracts", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="project root (default: this checkout)")
    parser.add_argument("--out", type=Path, default=None, help="artefact directory (default: <root>/abis)")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if artefacts are stale")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print solc warnings")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    out_dir = args.out or root / ABIS_DIR
    try:
        result = compile_contracts(root)
    except CompileError as exc:
        print(f"compile-contracts: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        for warning in result.warnings:
            print(warning, file=sys.stderr)
    if args.check:
        problems = stale_artifacts(result.artifacts, out_dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("abis/ is stale: run scripts/compile-contracts", file=sys.stderr)
            return 1
        print(f"{len(result.artifacts)} artefacts up to date in {out_dir}")
        return 0
    for path in write_artifacts(result.artifacts, out_dir):
        print(f"wrote {path}")
    return 0

"""abis/ must be exactly what scripts/compile-contracts produces from contracts/evm (CI staleness check)."""

from pathlib import Path

import pytest

from chains.evm import compile as cc

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not cc.node_available(ROOT), reason="node / node_modules/solc missing (run `npm ci`)")
def test_abis_match_sources(tmp_path):
    result = cc.compile_contracts(ROOT)
    fresh = tmp_path / "abis"
    cc.write_artifacts(result.artifacts, fresh)
    committed = ROOT / cc.ABIS_DIR
    problems = []
    for path in sorted(fresh.glob("*.json")):
        target = committed / path.name
        if not target.is_file():
            problems.append(f"{path.stem}: abis/{path.name} is missing")
        elif target.read_bytes() != path.read_bytes():
            problems.extend(cc.stale_artifacts({path.stem: result.artifacts[path.stem]}, committed)
                            or [f"{path.stem}: abis/{path.name} differs"])
    orphans = sorted(p.stem for p in committed.glob("*.json") if not (fresh / p.name).exists())
    problems.extend(f"{name}: abis/{name}.json has no contract in contracts/evm" for name in orphans)
    assert not problems, "stale contract artefacts, run scripts/compile-contracts:\n  " + "\n  ".join(problems)


def test_protocol_artifacts_present():
    for name in ("CarbonCredit", "Marketplace", "Escrow", "QRPayment", "IoTAnchor", "EventFlood"):
        assert (ROOT / "abis" / f"{name}.json").is_file(), f"abis/{name}.json missing"

"""The README stays true: two set-up commands first, the config reference generated from the settings object."""

from pathlib import Path

from carbonledger.config_doc import BEGIN, END, reference_markdown

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_config_reference_matches_settings():
    block = README.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert block == reference_markdown(), "README config reference is stale: run `python -m carbonledger.config_doc`"


def test_opens_with_the_two_commands_and_ci_runs_the_test_one():
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["./scripts/demo", "./scripts/test"]
    assert "scripts/test" in (ROOT / ".ci/run").read_text()
    for script in ("scripts/demo", "scripts/test"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} must be executable"


def test_security_section_covers_every_oracle_route():
    """Each route the oracle serves has a row saying what authenticates it, its limits and what is logged."""
    import re

    from core.config import OracleSettings
    from oracle.app import OracleApp

    section = README.split("### Oracle routes", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    for route in OracleApp(None, OracleSettings(), "x").asgi().routes:
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: "{id}" if m[1] in ("rid", "vid") else "{" + m[1] + "}", route.path)
        row = next((r for r in rows if f"`{sorted(route.methods - {'HEAD'})[0]} {path}`" in r), None)
        assert row is not None, f"README security section lacks {path}"
        assert len([c for c in row.split(" | ") if c.strip()]) == 4, row

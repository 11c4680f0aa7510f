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

"""docs/deploy.md stays true to the code: every setting, environment variable, command and option it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from carbonledger.cli import build_parser
from core.config import OTHER_ENV, _env_names

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "deploy.md").read_text()
README = (ROOT / "README.md").read_text()


def _settings() -> set[str]:
    table = README[README.index("config-reference:begin"):README.index("config-reference:end")]
    return {re.sub(r"<[^>]+>", "*", k) for k in re.findall(r"^\| `([^`]+)`", table, re.M)}


def test_every_setting_named_exists():
    known = _settings()
    named = {k for k in re.findall(r"`((?:oracle|api|indexer|database|chains)\.[a-z_.<>0-9]+)`", DOC)}
    named |= {f"{s}.{k}" for s, k in re.findall(r"^\[(oracle|api|indexer|database)\]\n(?:.*\n)*?([a-z_]+) =", DOC, re.M)}
    assert named
    for key in named:
        pattern = re.sub(r"<[^>]+>", "*", key)
        pattern = re.sub(r"^chains\.[a-z0-9_]+\.", "chains.*.", pattern)
        pattern = re.sub(r"^(chains\.\*\.contracts)\.[A-Za-z]+\.", r"\1.*.", pattern)
        assert pattern in known or any(k.startswith(pattern + ".") for k in known), key


def test_every_environment_variable_named_exists():
    known = set(_env_names()) | {"CARBONLEDGER_" + o for o in OTHER_ENV}
    named = set(re.findall(r"CARBONLEDGER_[A-Z_]+", DOC)) - {"CARBONLEDGER_"}
    assert named
    for var in named:
        assert var in known or var.startswith("CARBONLEDGER_CHAINS_"), var


@pytest.mark.parametrize("line", [ln for ln in DOC.splitlines() if ln.startswith("carbonledger ")])
def test_every_command_line_parses(line):
    argv = line.split("#", 1)[0].replace("\\", "").split()[1:]
    argv = [a.replace('"$RPC"', "http://x") for a in argv]
    build_parser().parse_args(argv)


def test_version_is_one_number_everywhere(capsys):
    import tomllib

    from carbonledger import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    top = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M).group(1)
    assert project["version"] == top == __version__  # __version__ is read from the installed metadata
    assert (ROOT / "LICENSE").read_text().strip().startswith("Apache License") and project["license"]["text"] == "Apache-2.0"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"carbonledger {__version__}"

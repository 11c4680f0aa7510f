"""Every sub-command's --help describes the command and each option (with its default where it has one); --config
and -v work before or after the sub-command."""

from __future__ import annotations

import argparse

import pytest

from carbonledger.cli import build_parser


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, (*prefix, name))
    if prefix:
        yield prefix, parser


COMMANDS = list(_commands(build_parser()))


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_describes_the_command_and_every_option(path, parser, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*path, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert parser.description and parser.description.split()[0] in out
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            assert action.help, f"{' '.join(path)} {action.option_strings[0]} has no help"


def test_config_and_verbose_before_or_after_the_sub_command():
    p = build_parser()
    a = p.parse_args(["--config", "a.toml", "-v", "migrate"])
    b = p.parse_args(["migrate", "--config", "a.toml", "-v"])
    c = p.parse_args(["migrate"])
    assert (a.config, a.verbose) == (b.config, b.verbose) == ("a.toml", True)
    assert (c.config, c.verbose) == (None, False)
    d = p.parse_args(["--config", "a.toml", "oracle", "run"])  # not overridden by the sub-command's own option
    assert d.config == "a.toml"

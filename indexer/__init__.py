"""Chain -> Postgres: sources (chains.*), handlers ("Contract:Event"), the sync loop (cursor, finality, reorgs)."""

from __future__ import annotations


def run(settings, **kw):  # noqa: ANN001 - thin lazy re-export keeps `import indexer` cheap
    from indexer.runner import run as _run

    return _run(settings, **kw)


def run_once(settings, **kw):  # noqa: ANN001
    from indexer.runner import run_once as _run_once

    return _run_once(settings, **kw)

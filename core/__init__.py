"""The ground every carbonledger part stands on: settings, logs, secrets, process plumbing (signals, ops server,
start-up checks, rate limits), the embedded Postgres, and the local chains used by the demo and the tests.

It imports nothing of the project's own above it (chains, store, indexer, oracle, gqlapi, the command line): arrows
point down into it, never out of it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("carbonledger")  # one source: pyproject.toml
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

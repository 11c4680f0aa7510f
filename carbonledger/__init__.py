"""carbonledger: the off-chain half of on-chain carbon-credit and escrow marketplaces."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("carbonledger")  # one source: pyproject.toml
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

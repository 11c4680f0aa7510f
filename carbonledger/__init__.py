"""carbonledger: the off-chain half of on-chain carbon-credit and escrow marketplaces.

This package is the top layer: the `carbonledger` command (`cli`) and the demo. Everything it runs lives below it
(`core`, `chains`, `store`, `indexer`, `oracle`, `gqlapi`), and nothing below imports it."""

from core import __version__

__all__ = ["__version__"]

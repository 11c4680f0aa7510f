"""carbonledger: the off-chain half of on-chain carbon-credit and escrow marketplaces."""

__version__ = "0.1.0"

"""The signing oracle: off-chain facts (payments, IoT readings, settlements, approvals) to on-chain writes, once."""

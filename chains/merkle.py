"""Merkle trees compatible with OpenZeppelin's ``MerkleProof.verify`` (sorted-pair keccak256).

Layout: level 0 is the leaves in the given order; each next level hashes adjacent pairs with
``keccak256(min(a, b) ++ max(a, b))``; an odd last node is promoted unchanged. A single leaf is its own root
with an empty proof. Leaves are 32-byte hashes; use :func:`hash_leaf` to turn raw data into a leaf (it
double-hashes, like OpenZeppelin's StandardMerkleTree, so a leaf can never be mistaken for an inner node).
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_hash.auto import keccak

__all__ = ["MerkleTree", "build_tree", "hash_leaf", "hash_pair", "verify"]


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Commutative keccak256 of two 32-byte nodes (smaller first), as in ``MerkleProof``."""
    return keccak(a + b) if a <= b else keccak(b + a)


def hash_leaf(data: bytes) -> bytes:
    """A 32-byte leaf for arbitrary ``data``: ``keccak256(keccak256(data))``."""
    return keccak(keccak(bytes(data)))


def _check_node(node: bytes, what: str) -> bytes:
    node = bytes(node)
    if len(node) != 32:
        raise ValueError(f"{what} must be 32 bytes, got {len(node)}")
    return node


@dataclass(frozen=True)
class MerkleTree:
    """An immutable tree; ``levels[0]`` are the leaves and ``levels[-1] == [root]``."""

    levels: tuple[tuple[bytes, ...], ...]

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    @property
    def leaves(self) -> tuple[bytes, ...]:
        return self.levels[0]

    def __len__(self) -> int:
        return len(self.levels[0])

    def proof(self, index: int) -> list[bytes]:
        """Sibling hashes from leaf ``index`` up to the root (empty for a one-leaf tree)."""
        if not 0 <= index < len(self):
            raise IndexError(f"leaf index {index} out of range for {len(self)} leaves")
        proof = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):  # else: odd node promoted, nothing to add
                proof.append(level[sibling])
            index //= 2
        return proof


def build_tree(leaves: list[bytes]) -> MerkleTree:
    """Build the tree over 32-byte ``leaves`` (order preserved; duplicates allowed)."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    level = tuple(_check_node(leaf, "leaf") for leaf in leaves)
    levels = [level]
    while len(level) > 1:
        nxt = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = tuple(nxt)
        levels.append(level)
    return MerkleTree(levels=tuple(levels))


def verify(root: bytes, leaf: bytes, proof: list[bytes]) -> bool:
    """True if ``proof`` proves ``leaf`` under ``root`` (same rule as ``MerkleProof.verify``)."""
    node = bytes(leaf)
    for sibling in proof:
        node = hash_pair(node, bytes(sibling))
    return node == bytes(root)

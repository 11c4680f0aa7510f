// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title IoTAnchor
/// @notice Anchors Merkle roots of IoT sensor-reading windows so anyone can verify a reading on chain
///         (sorted-pair Merkle proofs, as built by chains/merkle.py).
contract IoTAnchor is AccessControl {
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");

    struct Anchor {
        bytes32 root;
        uint32 leafCount;
        uint64 windowStart;
        uint64 windowEnd;
        uint16 qualityScore;
        uint64 blockNumber;
    }

    error ZeroRoot();
    error EmptyAnchor();
    error InvalidWindow(uint64 windowStart, uint64 windowEnd);
    error InvalidQualityScore(uint16 qualityScore);
    error RootAlreadyAnchored(bytes32 root);

    event Anchored(
        uint256 indexed anchorId,
        bytes32 indexed root,
        uint32 leafCount,
        uint64 windowStart,
        uint64 windowEnd,
        uint16 qualityScore
    );

    uint256 public anchorCount;
    mapping(uint256 anchorId => Anchor) public anchors;
    mapping(bytes32 root => uint256) public anchoredAt;

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @param qualityScore data quality of the window in basis points (0..10000).
    function anchor(bytes32 root, uint32 leafCount, uint64 windowStart, uint64 windowEnd, uint16 qualityScore)
        external
        onlyRole(ORACLE_ROLE)
        returns (uint256 anchorId)
    {
        if (root == bytes32(0)) revert ZeroRoot();
        if (leafCount == 0) revert EmptyAnchor();
        if (windowStart > windowEnd) revert InvalidWindow(windowStart, windowEnd);
        if (qualityScore > 10000) revert InvalidQualityScore(qualityScore);
        if (anchoredAt[root] != 0) revert RootAlreadyAnchored(root);
        anchoredAt[root] = block.number;
        anchorId = ++anchorCount;
        anchors[anchorId] = Anchor(root, leafCount, windowStart, windowEnd, qualityScore, uint64(block.number));
        emit Anchored(anchorId, root, leafCount, windowStart, windowEnd, qualityScore);
    }

    /// @notice True if `root` is anchored and `proof` proves `leaf` under it.
    function verify(bytes32 root, bytes32 leaf, bytes32[] calldata proof) external view returns (bool) {
        if (anchoredAt[root] == 0) return false;
        return MerkleProof.verifyCalldata(proof, root, leaf);
    }
}

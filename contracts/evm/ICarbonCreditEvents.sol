// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ICarbonCreditEvents
/// @notice CarbonCredit's protocol events, shared with the bench's EventFlood (which must emit the same
///         signatures for the indexer to decode).
interface ICarbonCreditEvents {
    event BatchCreated(
        uint256 indexed batchId,
        string projectId,
        uint16 vintage,
        string methodology,
        string registry,
        string serialNumber,
        bytes32 metadataHash
    );
    event Minted(address indexed to, uint256 indexed batchId, uint256 amount, bytes32 verificationHash);
    event Retired(
        uint256 indexed certificateId,
        address indexed holder,
        uint256 indexed batchId,
        uint256 amount,
        string beneficiary,
        string reason
    );
}

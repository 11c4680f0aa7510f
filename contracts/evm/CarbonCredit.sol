// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {ERC1155Supply} from "@openzeppelin/contracts/token/ERC1155/extensions/ERC1155Supply.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ICarbonCreditEvents} from "./ICarbonCreditEvents.sol";

/// @title CarbonCredit
/// @notice ERC-1155 carbon credits. Each token id is one credit batch (a project vintage issued by a
///         registry); credits are minted against a unique off-chain verification and retired by burning,
///         which numbers a retirement certificate.
contract CarbonCredit is ERC1155Supply, AccessControl, ICarbonCreditEvents {
    bytes32 public constant ISSUER_ROLE = keccak256("ISSUER_ROLE");

    struct Batch {
        string projectId;
        uint16 vintage;
        string methodology;
        string registry;
        string serialNumber;
        bytes32 metadataHash;
    }

    error UnknownBatch(uint256 batchId);
    error VerificationAlreadyUsed(bytes32 verificationHash);
    error ZeroAmount();

    uint256 private _batchCount;
    uint256 private _certificateCount;
    mapping(uint256 batchId => Batch) private _batches;
    mapping(uint256 batchId => uint256) public totalRetired;
    mapping(bytes32 verificationHash => bool) public usedVerification;

    constructor(address admin, string memory uri_) ERC1155(uri_) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Registers a new credit batch; its id is the ERC-1155 token id.
    function createBatch(
        string calldata projectId,
        uint16 vintage,
        string calldata methodology,
        string calldata registry,
        string calldata serialNumber,
        bytes32 metadataHash
    ) external onlyRole(ISSUER_ROLE) returns (uint256 batchId) {
        batchId = ++_batchCount;
        _batches[batchId] = Batch(projectId, vintage, methodology, registry, serialNumber, metadataHash);
        emit BatchCreated(batchId, projectId, vintage, methodology, registry, serialNumber, metadataHash);
    }

    /// @notice Mints `amount` credits of `batchId` to `to`; each verification can back one mint only.
    function mint(address to, uint256 batchId, uint256 amount, bytes32 verificationHash)
        external
        onlyRole(ISSUER_ROLE)
    {
        _requireBatch(batchId);
        if (amount == 0) revert ZeroAmount();
        if (usedVerification[verificationHash]) revert VerificationAlreadyUsed(verificationHash);
        usedVerification[verificationHash] = true;
        _mint(to, batchId, amount, "");
        emit Minted(to, batchId, amount, verificationHash);
    }

    /// @notice Burns `amount` of the caller's credits and issues the next retirement certificate.
    function retire(uint256 batchId, uint256 amount, string calldata beneficiary, string calldata reason)
        external
        returns (uint256 certificateId)
    {
        _requireBatch(batchId);
        if (amount == 0) revert ZeroAmount();
        _burn(msg.sender, batchId, amount);
        totalRetired[batchId] += amount;
        certificateId = ++_certificateCount;
        emit Retired(certificateId, msg.sender, batchId, amount, beneficiary, reason);
    }

    function batchCount() external view returns (uint256) {
        return _batchCount;
    }

    function certificateCount() external view returns (uint256) {
        return _certificateCount;
    }

    function batches(uint256 batchId) external view returns (Batch memory) {
        _requireBatch(batchId);
        return _batches[batchId];
    }

    function supportsInterface(bytes4 interfaceId) public view override(ERC1155, AccessControl) returns (bool) {
        return super.supportsInterface(interfaceId);
    }

    function _requireBatch(uint256 batchId) private view {
        if (batchId == 0 || batchId > _batchCount) revert UnknownBatch(batchId);
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
import {ICarbonCreditEvents} from "../ICarbonCreditEvents.sol";

/// @title EventFlood
/// @notice Benchmark helper: emits CarbonCredit's protocol events (declared once, in ICarbonCreditEvents) without
///         any state, so one transaction yields hundreds of events. Point the indexer's "CarbonCredit" at this
///         address.
contract EventFlood is ICarbonCreditEvents {
    event TransferSingle(
        address indexed operator, address indexed from, address indexed to, uint256 id, uint256 value
    );

    error LengthMismatch(uint256 from, uint256 to);

    /// @notice For each of `batches` batches from `firstBatchId`: BatchCreated, then per holder a mint
    ///         (TransferSingle from 0x0 + Minted with a verification hash unique per contract/batch/holder).
    function flood(uint256 firstBatchId, uint256 batches, address[] calldata holders, uint256 perHolder) external {
        for (uint256 b = 0; b < batches; ++b) {
            uint256 batchId = firstBatchId + b;
            string memory id = Strings.toString(batchId);
            emit BatchCreated(
                batchId,
                string.concat("BENCH-", id),
                2024,
                "VM0047",
                "bench",
                string.concat("SN-", id),
                keccak256(abi.encode(batchId))
            );
            for (uint256 h = 0; h < holders.length; ++h) {
                address to = holders[h];
                emit TransferSingle(msg.sender, address(0), to, batchId, perHolder);
                emit Minted(to, batchId, perHolder, keccak256(abi.encode(address(this), batchId, to)));
            }
        }
    }

    /// @notice Emits TransferSingle(from[i] -> to[i]) of `amount` credits of `batchId`.
    function floodTransfers(uint256 batchId, address[] calldata from, address[] calldata to, uint256 amount)
        external
    {
        if (from.length != to.length) revert LengthMismatch(from.length, to.length);
        for (uint256 i = 0; i < from.length; ++i) {
            emit TransferSingle(msg.sender, from[i], to[i], batchId, amount);
        }
    }

    /// @notice Emits a retirement (burn TransferSingle + Retired) per holder, certificates numbered from
    ///         `firstCertificateId`.
    function floodRetirements(uint256 firstCertificateId, uint256 batchId, address[] calldata holders, uint256 amount)
        external
    {
        for (uint256 i = 0; i < holders.length; ++i) {
            emit TransferSingle(msg.sender, holders[i], address(0), batchId, amount);
            emit Retired(firstCertificateId + i, holders[i], batchId, amount, "bench", "benchmark");
        }
    }
}

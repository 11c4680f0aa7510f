// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title QRPayment
/// @notice Payments against a QR-code order hash. Anyone can pay into a hash; a settler later releases the
///         accumulated amount to the beneficiary, once per hash. An unpaid hash cannot be settled: settling it
///         would mark it settled and make every later payment into it revert (the order could never be paid).
contract QRPayment is AccessControl, ReentrancyGuard {
    bytes32 public constant SETTLER_ROLE = keccak256("SETTLER_ROLE");

    error ZeroPayment();
    error ZeroAddress();
    error OrderAlreadySettled(bytes32 orderDataHash);
    error OrderNotPaid(bytes32 orderDataHash);
    error EthTransferFailed(address to, uint256 amount);

    event Paid(bytes32 indexed orderHash, address indexed payer, uint256 amount);
    event Settled(bytes32 indexed orderDataHash, address indexed beneficiary, uint256 amount);

    mapping(bytes32 orderHash => uint256) public pending;
    mapping(bytes32 orderHash => bool) public settled;

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    function pay(bytes32 orderHash) external payable {
        if (msg.value == 0) revert ZeroPayment();
        if (settled[orderHash]) revert OrderAlreadySettled(orderHash);
        pending[orderHash] += msg.value;
        emit Paid(orderHash, msg.sender, msg.value);
    }

    function settleQROrder(address beneficiary, bytes32 orderDataHash)
        external
        onlyRole(SETTLER_ROLE)
        nonReentrant
    {
        if (beneficiary == address(0)) revert ZeroAddress();
        if (settled[orderDataHash]) revert OrderAlreadySettled(orderDataHash);
        uint256 amount = pending[orderDataHash];
        if (amount == 0) revert OrderNotPaid(orderDataHash);
        settled[orderDataHash] = true;
        pending[orderDataHash] = 0;
        (bool ok,) = beneficiary.call{value: amount}("");
        if (!ok) revert EthTransferFailed(beneficiary, amount);
        emit Settled(orderDataHash, beneficiary, amount);
    }
}

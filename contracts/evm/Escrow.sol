// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title Escrow
/// @notice Buyer/seller order escrow (the Descrow lifecycle). An order is funded either on chain in ETH or
///         off chain, recorded by the oracle with a unique payment reference; on-chain funds are released to
///         the seller on delivery or moved by an arbiter when disputed.
contract Escrow is AccessControl, ReentrancyGuard {
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");
    bytes32 public constant ARBITER_ROLE = keccak256("ARBITER_ROLE");

    enum Status {
        None,
        Created,
        Funded,
        Shipped,
        Delivered,
        Disputed,
        Resolved,
        Cancelled
    }

    struct Order {
        address buyer;
        address seller;
        uint256 amount;
        bytes32 metadataHash;
        bytes32 trackingHash;
        Status status;
        bool fundedOffchain;
    }

    error ZeroAmount();
    error ZeroAddress();
    error UnknownOrder(uint256 orderId);
    error InvalidStatus(uint256 orderId, Status current);
    error NotBuyer(uint256 orderId, address caller);
    error NotSeller(uint256 orderId, address caller);
    error NotParty(uint256 orderId, address caller);
    error WrongPayment(uint256 expected, uint256 got);
    error EmptyPaymentRef();
    error PaymentRefUsed(string paymentRef);
    error EthTransferFailed(address to, uint256 amount);

    event OrderCreated(
        uint256 indexed orderId, address indexed buyer, address indexed seller, uint256 amount, bytes32 metadataHash
    );
    event Funded(uint256 indexed orderId, address indexed payer, uint256 amount, string paymentRef);
    event Shipped(uint256 indexed orderId, bytes32 trackingHash);
    event Delivered(uint256 indexed orderId);
    event Disputed(uint256 indexed orderId, address indexed by, string reason);
    event Resolved(uint256 indexed orderId, bool refundedBuyer);
    event Cancelled(uint256 indexed orderId);

    uint256 public orderCount;
    mapping(uint256 orderId => Order) public orders;
    mapping(bytes32 refHash => bool) private _usedRefs;

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Opens an order from the caller (buyer) to `seller` for `amount` wei.
    function createOrder(address seller, uint256 amount, bytes32 metadataHash) external returns (uint256 orderId) {
        if (seller == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        orderId = ++orderCount;
        orders[orderId] = Order(msg.sender, seller, amount, metadataHash, bytes32(0), Status.Created, false);
        emit OrderCreated(orderId, msg.sender, seller, amount, metadataHash);
    }

    /// @notice Buyer deposits exactly the order amount.
    function fund(uint256 orderId) external payable nonReentrant {
        Order storage o = _order(orderId, Status.Created);
        if (msg.sender != o.buyer) revert NotBuyer(orderId, msg.sender);
        if (msg.value != o.amount) revert WrongPayment(o.amount, msg.value);
        o.status = Status.Funded;
        emit Funded(orderId, msg.sender, msg.value, "");
    }

    /// @notice Oracle records that the order was paid off chain (e.g. card/bank) under `paymentRef`.
    function recordOffchainPayment(uint256 orderId, string calldata paymentRef) external onlyRole(ORACLE_ROLE) {
        Order storage o = _order(orderId, Status.Created);
        if (bytes(paymentRef).length == 0) revert EmptyPaymentRef();
        bytes32 refHash = keccak256(bytes(paymentRef));
        if (_usedRefs[refHash]) revert PaymentRefUsed(paymentRef);
        _usedRefs[refHash] = true;
        o.status = Status.Funded;
        o.fundedOffchain = true;
        emit Funded(orderId, msg.sender, o.amount, paymentRef);
    }

    function markShipped(uint256 orderId, bytes32 trackingHash) external {
        Order storage o = _order(orderId, Status.Funded);
        if (msg.sender != o.seller) revert NotSeller(orderId, msg.sender);
        o.status = Status.Shipped;
        o.trackingHash = trackingHash;
        emit Shipped(orderId, trackingHash);
    }

    /// @notice Buyer confirms delivery; on-chain funds go to the seller.
    function confirmDelivery(uint256 orderId) external nonReentrant {
        Order storage o = _order(orderId, Status.Shipped);
        if (msg.sender != o.buyer) revert NotBuyer(orderId, msg.sender);
        o.status = Status.Delivered;
        if (!o.fundedOffchain) _send(o.seller, o.amount);
        emit Delivered(orderId);
    }

    function raiseDispute(uint256 orderId, string calldata reason) external {
        Order storage o = _known(orderId);
        if (msg.sender != o.buyer && msg.sender != o.seller) revert NotParty(orderId, msg.sender);
        if (o.status != Status.Funded && o.status != Status.Shipped) revert InvalidStatus(orderId, o.status);
        o.status = Status.Disputed;
        emit Disputed(orderId, msg.sender, reason);
    }

    /// @notice Arbiter settles a dispute; on-chain funds go back to the buyer or on to the seller.
    function resolveDispute(uint256 orderId, bool refundBuyer) external onlyRole(ARBITER_ROLE) nonReentrant {
        Order storage o = _order(orderId, Status.Disputed);
        o.status = Status.Resolved;
        if (!o.fundedOffchain) _send(refundBuyer ? o.buyer : o.seller, o.amount);
        emit Resolved(orderId, refundBuyer);
    }

    function cancel(uint256 orderId) external {
        Order storage o = _order(orderId, Status.Created);
        if (msg.sender != o.buyer) revert NotBuyer(orderId, msg.sender);
        o.status = Status.Cancelled;
        emit Cancelled(orderId);
    }

    function paymentRefUsed(string calldata paymentRef) external view returns (bool) {
        return _usedRefs[keccak256(bytes(paymentRef))];
    }

    function _known(uint256 orderId) private view returns (Order storage o) {
        o = orders[orderId];
        if (o.status == Status.None) revert UnknownOrder(orderId);
    }

    function _order(uint256 orderId, Status expected) private view returns (Order storage o) {
        o = _known(orderId);
        if (o.status != expected) revert InvalidStatus(orderId, o.status);
    }

    function _send(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert EthTransferFailed(to, amount);
    }
}

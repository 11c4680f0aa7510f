// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC1155} from "@openzeppelin/contracts/token/ERC1155/IERC1155.sol";
import {ERC1155Holder} from "@openzeppelin/contracts/token/ERC1155/utils/ERC1155Holder.sol";
import {PullOnlyReceiver} from "./PullOnlyReceiver.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title Marketplace
/// @notice Fixed-price listings of CarbonCredit batches. Listed credits are held by the marketplace until
///         bought on chain (ETH to the seller), settled by the oracle after a fiat payment, or cancelled.
contract Marketplace is AccessControl, PullOnlyReceiver, ReentrancyGuard {
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");

    struct Listing {
        address seller;
        uint256 batchId;
        uint256 remaining;
        uint256 pricePerUnit;
        bool active;
    }

    error ZeroAmount();
    error ZeroAddress();
    error UnknownListing(uint256 listingId);
    error ListingNotActive(uint256 listingId);
    error InsufficientListing(uint256 listingId, uint256 available, uint256 requested);
    error WrongPayment(uint256 expected, uint256 got);
    error EmptyPaymentRef();
    error PaymentRefUsed(string paymentRef);
    error NotSeller(uint256 listingId, address caller);
    error EthTransferFailed(address to, uint256 amount);

    event Listed(
        uint256 indexed listingId, address indexed seller, uint256 indexed batchId, uint256 amount, uint256 pricePerUnit
    );
    event Sold(
        uint256 indexed listingId,
        address indexed buyer,
        address indexed seller,
        uint256 batchId,
        uint256 amount,
        uint256 pricePerUnit,
        string paymentRef
    );
    event Cancelled(uint256 indexed listingId);

    IERC1155 public immutable credit;
    uint256 public listingCount;
    mapping(uint256 listingId => Listing) public listings;
    mapping(bytes32 refHash => bool) private _usedRefs;

    constructor(address admin, address credit_) {
        if (credit_ == address(0)) revert ZeroAddress();
        credit = IERC1155(credit_);
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Escrows `amount` credits of `batchId` from the caller (who must have approved this contract).
    function list(uint256 batchId, uint256 amount, uint256 pricePerUnit)
        external
        nonReentrant
        returns (uint256 listingId)
    {
        if (amount == 0) revert ZeroAmount();
        listingId = ++listingCount;
        listings[listingId] = Listing(msg.sender, batchId, amount, pricePerUnit, true);
        credit.safeTransferFrom(msg.sender, address(this), batchId, amount, "");
        emit Listed(listingId, msg.sender, batchId, amount, pricePerUnit);
    }

    /// @notice Buys `amount` credits paying exactly `amount * pricePerUnit` wei, forwarded to the seller.
    function buy(uint256 listingId, uint256 amount) external payable nonReentrant {
        Listing storage l = _take(listingId, amount);
        uint256 expected = amount * l.pricePerUnit;
        if (msg.value != expected) revert WrongPayment(expected, msg.value);
        address seller = l.seller;
        uint256 batchId = l.batchId;
        credit.safeTransferFrom(address(this), msg.sender, batchId, amount, "");
        if (expected > 0) {
            (bool ok,) = seller.call{value: expected}("");
            if (!ok) revert EthTransferFailed(seller, expected);
        }
        emit Sold(listingId, msg.sender, seller, batchId, amount, l.pricePerUnit, "");
    }

    /// @notice Delivers credits to `buyer` after an off-chain (fiat) payment identified by `paymentRef`.
    function settleOffchain(uint256 listingId, address buyer, uint256 amount, string calldata paymentRef)
        external
        onlyRole(ORACLE_ROLE)
        nonReentrant
    {
        if (buyer == address(0)) revert ZeroAddress();
        if (bytes(paymentRef).length == 0) revert EmptyPaymentRef();
        bytes32 refHash = keccak256(bytes(paymentRef));
        if (_usedRefs[refHash]) revert PaymentRefUsed(paymentRef);
        _usedRefs[refHash] = true;
        Listing storage l = _take(listingId, amount);
        credit.safeTransferFrom(address(this), buyer, l.batchId, amount, "");
        emit Sold(listingId, buyer, l.seller, l.batchId, amount, l.pricePerUnit, paymentRef);
    }

    /// @notice Closes a listing and returns the unsold credits to the seller (seller or admin only).
    function cancel(uint256 listingId) external nonReentrant {
        Listing storage l = _active(listingId);
        if (msg.sender != l.seller && !hasRole(DEFAULT_ADMIN_ROLE, msg.sender)) {
            revert NotSeller(listingId, msg.sender);
        }
        uint256 remaining = l.remaining;
        l.remaining = 0;
        l.active = false;
        if (remaining > 0) credit.safeTransferFrom(address(this), l.seller, l.batchId, remaining, "");
        emit Cancelled(listingId);
    }

    function paymentRefUsed(string calldata paymentRef) external view returns (bool) {
        return _usedRefs[keccak256(bytes(paymentRef))];
    }


    function supportsInterface(bytes4 interfaceId)
        public
        view
        override(AccessControl, ERC1155Holder)
        returns (bool)
    {
        return super.supportsInterface(interfaceId);
    }

    function _active(uint256 listingId) private view returns (Listing storage l) {
        if (listingId == 0 || listingId > listingCount) revert UnknownListing(listingId);
        l = listings[listingId];
        if (!l.active) revert ListingNotActive(listingId);
    }

    function _take(uint256 listingId, uint256 amount) private returns (Listing storage l) {
        l = _active(listingId);
        if (amount == 0) revert ZeroAmount();
        if (amount > l.remaining) revert InsufficientListing(listingId, l.remaining, amount);
        l.remaining -= amount;
        if (l.remaining == 0) l.active = false;
    }
}

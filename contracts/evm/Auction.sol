// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC1155} from "@openzeppelin/contracts/token/ERC1155/IERC1155.sol";
import {ERC1155Holder} from "@openzeppelin/contracts/token/ERC1155/utils/ERC1155Holder.sol";
import {PullOnlyReceiver} from "./PullOnlyReceiver.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title Auction
/// @notice English auctions of CarbonCredit lots, the Marketplace's sibling. The seller escrows the lot; bids are
///         prices per unit, escrowed in native currency (`bid`) or recorded by the oracle from a verified fiat
///         payment hold (`bidOffchain`, released off chain when outbid). Outbid native bids are refunded by pull
///         (`withdraw`), never pushed. A bid in the last `extensionWindow` seconds moves the end to
///         `now + extensionWindow` (anti-sniping). After the end anyone may `settle`: the winner receives the lot and
///         the seller the price (credited for withdrawal), or, with no bid, the lot goes back to the seller.
contract Auction is AccessControl, PullOnlyReceiver, ReentrancyGuard {
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");

    struct Lot {
        address seller;
        uint256 batchId;
        uint256 amount;
        uint256 reservePricePerUnit;
        uint256 minIncrementPerUnit;
        uint64 endTime;
        address highestBidder;
        uint256 highestPricePerUnit;
        bool offchainBid; // the highest bid is a fiat hold: nothing escrowed here
        bool settled;
    }

    error ZeroAmount();
    error ZeroAddress();
    error ZeroIncrement();
    error EndInPast(uint64 endTime);
    error UnknownAuction(uint256 auctionId);
    error AuctionEnded(uint256 auctionId, uint64 endTime);
    error AuctionNotEnded(uint256 auctionId, uint64 endTime);
    error AlreadySettled(uint256 auctionId);
    error BidTooLow(uint256 auctionId, uint256 minimumPricePerUnit, uint256 pricePerUnit);
    error WrongPayment(uint256 expected, uint256 got);
    error SellerCannotBid(uint256 auctionId);
    error EmptyPaymentRef();
    error PaymentRefUsed(string paymentRef);
    error NothingToWithdraw(address account);
    error NoUnclaimedLot(uint256 auctionId, address caller);
    error EthTransferFailed(address to, uint256 amount);

    event AuctionCreated(
        uint256 indexed auctionId,
        address indexed seller,
        uint256 indexed batchId,
        uint256 amount,
        uint256 reservePricePerUnit,
        uint256 minIncrementPerUnit,
        uint64 endTime
    );
    /// @param endTime the auction's end after this bid (later than before when the bid extended it)
    /// @param paymentRef the fiat hold behind an off-chain bid; empty for a native bid
    event BidPlaced(
        uint256 indexed auctionId, address indexed bidder, uint256 pricePerUnit, uint64 endTime, string paymentRef
    );
    /// @param winner address(0) when no bid was placed: the lot went back to the seller
    event AuctionSettled(
        uint256 indexed auctionId,
        address indexed winner,
        address indexed seller,
        uint256 batchId,
        uint256 amount,
        uint256 pricePerUnit,
        string paymentRef
    );
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice The winner could not receive the lot at settlement (a contract that refuses ERC-1155 tokens): it is
    ///         kept here for the winner to claim to an address of its choice (`claimLot`).
    event LotUnclaimed(uint256 indexed auctionId, address indexed winner);
    event LotClaimed(uint256 indexed auctionId, address indexed winner, address to);
    event ExtensionWindowSet(uint64 extensionWindow);

    IERC1155 public immutable credit;
    uint64 public extensionWindow;
    uint256 public auctionCount;
    mapping(uint256 auctionId => Lot) public lots;
    mapping(uint256 auctionId => string) public winningPaymentRef;
    mapping(address account => uint256) public pendingReturns;
    mapping(uint256 auctionId => address winner) public unclaimedLots;
    mapping(bytes32 refHash => bool) private _usedRefs;

    constructor(address admin, address credit_, uint64 extensionWindow_) {
        if (credit_ == address(0) || admin == address(0)) revert ZeroAddress();
        credit = IERC1155(credit_);
        extensionWindow = extensionWindow_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    function setExtensionWindow(uint64 extensionWindow_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        extensionWindow = extensionWindow_;
        emit ExtensionWindowSet(extensionWindow_);
    }

    /// @notice Escrows `amount` credits of `batchId` from the caller (who must have approved this contract).
    function create(
        uint256 batchId,
        uint256 amount,
        uint256 reservePricePerUnit,
        uint256 minIncrementPerUnit,
        uint64 endTime
    ) external nonReentrant returns (uint256 auctionId) {
        if (amount == 0) revert ZeroAmount();
        if (minIncrementPerUnit == 0) revert ZeroIncrement();
        if (endTime <= block.timestamp) revert EndInPast(endTime);
        auctionId = ++auctionCount;
        lots[auctionId] = Lot(msg.sender, batchId, amount, reservePricePerUnit, minIncrementPerUnit, endTime,
                              address(0), 0, false, false);
        credit.safeTransferFrom(msg.sender, address(this), batchId, amount, "");
        emit AuctionCreated(auctionId, msg.sender, batchId, amount, reservePricePerUnit, minIncrementPerUnit, endTime);
    }

    /// @notice Bids `pricePerUnit`, paying exactly `pricePerUnit * amount` wei, held until outbid or settled.
    function bid(uint256 auctionId, uint256 pricePerUnit) external payable nonReentrant {
        Lot storage l = _open(auctionId, msg.sender, pricePerUnit);
        uint256 expected = pricePerUnit * l.amount;
        if (msg.value != expected) revert WrongPayment(expected, msg.value);
        _outbid(l);
        l.offchainBid = false;
        _record(auctionId, l, msg.sender, pricePerUnit, "");
    }

    /// @notice Records a bid backed by a verified off-chain payment hold (oracle only; one use per reference).
    function bidOffchain(uint256 auctionId, address bidder, uint256 pricePerUnit, string calldata paymentRef)
        external
        onlyRole(ORACLE_ROLE)
        nonReentrant
    {
        if (bidder == address(0)) revert ZeroAddress();
        if (bytes(paymentRef).length == 0) revert EmptyPaymentRef();
        bytes32 refHash = keccak256(bytes(paymentRef));
        if (_usedRefs[refHash]) revert PaymentRefUsed(paymentRef);
        _usedRefs[refHash] = true;
        Lot storage l = _open(auctionId, bidder, pricePerUnit);
        _outbid(l);
        l.offchainBid = true;
        _record(auctionId, l, bidder, pricePerUnit, paymentRef);
    }

    /// @notice After the end, by anyone, once: the lot to the winner and the price to the seller (pull), or the lot
    ///         back to the seller when nobody bid.
    function settle(uint256 auctionId) external nonReentrant {
        Lot storage l = _known(auctionId);
        if (l.settled) revert AlreadySettled(auctionId);
        if (block.timestamp < l.endTime) revert AuctionNotEnded(auctionId, l.endTime);
        l.settled = true;
        address winner = l.highestBidder;
        string memory ref = winningPaymentRef[auctionId];
        if (winner == address(0)) {
            credit.safeTransferFrom(address(this), l.seller, l.batchId, l.amount, "");
            emit AuctionSettled(auctionId, address(0), l.seller, l.batchId, l.amount, 0, "");
            return;
        }
        if (!l.offchainBid) pendingReturns[l.seller] += l.highestPricePerUnit * l.amount;
        // A winner that refuses the tokens must not hold the settlement (and the seller's proceeds) hostage.
        try credit.safeTransferFrom(address(this), winner, l.batchId, l.amount, "") {}
        catch {
            unclaimedLots[auctionId] = winner;
            emit LotUnclaimed(auctionId, winner);
        }
        // After the delivery: the indexer names the transfer before it by this event (an auction settlement).
        emit AuctionSettled(auctionId, winner, l.seller, l.batchId, l.amount, l.highestPricePerUnit, ref);
    }

    /// @notice A winner whose lot could not be delivered at settlement takes it, to `to`.
    function claimLot(uint256 auctionId, address to) external nonReentrant {
        if (unclaimedLots[auctionId] != msg.sender) revert NoUnclaimedLot(auctionId, msg.sender);
        if (to == address(0)) revert ZeroAddress();
        Lot storage l = lots[auctionId];
        delete unclaimedLots[auctionId];
        credit.safeTransferFrom(address(this), to, l.batchId, l.amount, "");
        emit LotClaimed(auctionId, msg.sender, to);
    }

    /// @notice Pays out what the caller is owed: outbid native bids, and sellers' proceeds.
    function withdraw() external nonReentrant {
        uint256 owed = pendingReturns[msg.sender];
        if (owed == 0) revert NothingToWithdraw(msg.sender);
        pendingReturns[msg.sender] = 0;
        (bool ok,) = msg.sender.call{value: owed}("");
        if (!ok) revert EthTransferFailed(msg.sender, owed);
        emit Withdrawn(msg.sender, owed);
    }

    /// @notice Whether `settle` has run (a keeper asks before sending one).
    function isSettled(uint256 auctionId) external view returns (bool) {
        return lots[auctionId].settled;
    }

    function paymentRefUsed(string calldata paymentRef) external view returns (bool) {
        return _usedRefs[keccak256(bytes(paymentRef))];
    }

    /// @notice The lowest price per unit the next bid may offer.
    function minimumBid(uint256 auctionId) public view returns (uint256) {
        Lot storage l = _known(auctionId);
        return l.highestBidder == address(0) ? l.reservePricePerUnit : l.highestPricePerUnit + l.minIncrementPerUnit;
    }


    function supportsInterface(bytes4 interfaceId)
        public
        view
        override(AccessControl, ERC1155Holder)
        returns (bool)
    {
        return super.supportsInterface(interfaceId);
    }

    function _known(uint256 auctionId) private view returns (Lot storage l) {
        if (auctionId == 0 || auctionId > auctionCount) revert UnknownAuction(auctionId);
        l = lots[auctionId];
    }

    function _open(uint256 auctionId, address bidder, uint256 pricePerUnit) private view returns (Lot storage l) {
        l = _known(auctionId);
        if (l.settled) revert AlreadySettled(auctionId);
        if (block.timestamp >= l.endTime) revert AuctionEnded(auctionId, l.endTime);
        if (bidder == l.seller) revert SellerCannotBid(auctionId);
        uint256 minimum = minimumBid(auctionId);
        if (pricePerUnit < minimum) revert BidTooLow(auctionId, minimum, pricePerUnit);
    }

    /// @dev The previous native bid becomes withdrawable by its bidder; an off-chain hold is released off chain.
    function _outbid(Lot storage l) private {
        if (l.highestBidder != address(0) && !l.offchainBid) {
            pendingReturns[l.highestBidder] += l.highestPricePerUnit * l.amount;
        }
    }

    function _record(uint256 auctionId, Lot storage l, address bidder, uint256 pricePerUnit, string memory ref)
        private
    {
        l.highestBidder = bidder;
        l.highestPricePerUnit = pricePerUnit;
        winningPaymentRef[auctionId] = ref;
        if (l.endTime - block.timestamp < extensionWindow) l.endTime = uint64(block.timestamp) + extensionWindow;
        emit BidPlaced(auctionId, bidder, pricePerUnit, l.endTime, ref);
    }
}

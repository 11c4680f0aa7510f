// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC1155Holder} from "@openzeppelin/contracts/token/ERC1155/utils/ERC1155Holder.sol";

interface IAuctionForTests {
    function bid(uint256 auctionId, uint256 pricePerUnit) external payable;
    function withdraw() external;
    function settle(uint256 auctionId) external;
}

/// @title ReentrantBidder (tests only)
/// @notice A bidder that tries to re-enter the Auction while being paid: from `receive` (mode 1: withdraw again)
///         and from the ERC-1155 receipt of a won lot (mode 2: settle again); with `refuseEth` it rejects every
///         payment (a bidder that must not be able to block others). It records what the re-entry got.
contract ReentrantBidder is ERC1155Holder {
    IAuctionForTests public immutable auction;
    uint8 public mode;
    uint256 public target;
    bool public refuseEth;
    bool public reentered;
    bytes public reentryError;

    constructor(address auction_) {
        auction = IAuctionForTests(auction_);
    }

    function setMode(uint8 mode_, uint256 target_, bool refuseEth_) external {
        mode = mode_;
        target = target_;
        refuseEth = refuseEth_;
    }

    function bid(uint256 auctionId, uint256 pricePerUnit) external payable {
        auction.bid{value: msg.value}(auctionId, pricePerUnit);
    }

    function withdraw() external {
        auction.withdraw();
    }

    receive() external payable {
        require(!refuseEth, "no ETH, thanks");
        if (mode == 1) {
            mode = 0;
            try auction.withdraw() {
                reentered = true;
            } catch (bytes memory e) {
                reentryError = e;
            }
        }
    }

    function onERC1155Received(address, address, uint256, uint256, bytes memory)
        public
        override
        returns (bytes4)
    {
        if (mode == 2) {
            mode = 0;
            try auction.settle(target) {
                reentered = true;
            } catch (bytes memory e) {
                reentryError = e;
            }
        }
        return this.onERC1155Received.selector;
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC1155Holder} from "@openzeppelin/contracts/token/ERC1155/utils/ERC1155Holder.sol";

/// @title PullOnlyReceiver
/// @notice An ERC-1155 holder that accepts only the credits it pulls in itself (the Marketplace's `list`, the
///         Auction's `create`): a direct deposit would be stranded, so it is refused.
abstract contract PullOnlyReceiver is ERC1155Holder {
    error UnsolicitedTransfer(address operator);

    function onERC1155Received(address operator, address, uint256, uint256, bytes memory)
        public
        view
        virtual
        override
        returns (bytes4)
    {
        if (operator != address(this)) revert UnsolicitedTransfer(operator);
        return this.onERC1155Received.selector;
    }

    function onERC1155BatchReceived(address operator, address, uint256[] memory, uint256[] memory, bytes memory)
        public
        view
        virtual
        override
        returns (bytes4)
    {
        if (operator != address(this)) revert UnsolicitedTransfer(operator);
        return this.onERC1155BatchReceived.selector;
    }
}

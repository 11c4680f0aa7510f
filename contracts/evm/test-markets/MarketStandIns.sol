// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {IERC1155} from "@openzeppelin/contracts/token/ERC1155/IERC1155.sol";

// Test stand-ins for existing carbon markets (no Polygon or Celo node runs here). Each emits exactly the real
// events carbonledger maps (same signatures, same indexed fields as abis/markets/*.json, checked by a test against
// the topic index), with just enough behaviour (balances, burns, approvals) for the events to be truthful. Not for
// deployment anywhere but a test chain: minting is open.

/// @notice A Toucan TCO2: one ERC-20 per project vintage, retired by burning; both Retired versions.
contract StandInTCO2 is ERC20 {
    /// Before Toucan 1.4: (sender, amount); the published ABI names the second word tokenId.
    event Retired(address sender, uint256 tokenId);
    /// Toucan 1.4+.
    event Retired(address sender, uint256 amount, uint256 eventId);

    uint256 public retirementCount;

    constructor(string memory name_, string memory symbol_) ERC20(name_, symbol_) {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function retireLegacy(uint256 amount) external {
        _burn(msg.sender, amount);
        emit Retired(msg.sender, amount);
    }

    function retire(uint256 amount) public returns (uint256 eventId) {
        _burn(msg.sender, amount);
        eventId = ++retirementCount;
        emit Retired(msg.sender, amount, eventId);
    }

    function retireAndMintCertificate(StandInRetirementCertificates certificates, uint256 amount) external {
        uint256 eventId = retire(amount);
        certificates.mintCertificate(msg.sender, eventId);
    }
}

/// @notice Toucan RetirementCertificates: an ERC-721 per certificate.
contract StandInRetirementCertificates is ERC721 {
    event CertificateMinted(uint256 tokenId);

    uint256 public count;
    mapping(uint256 => uint256) public retirementEventOf;

    constructor() ERC721("Toucan Protocol: Retirement Certificates", "TOUCAN-CERT") {}

    function mintCertificate(address to, uint256 retirementEventId) external returns (uint256 tokenId) {
        tokenId = ++count;
        retirementEventOf[tokenId] = retirementEventId;
        _mint(to, tokenId);
        emit CertificateMinted(tokenId);
    }
}

/// @notice An ICR project contract: ERC-1155, one token id per vintage, retired by burning.
contract StandInICRProject is ERC1155 {
    event RetiredVintage(address indexed account, uint256 indexed tokenId, uint256 amount, uint256 nftTokenId, bytes data);

    uint256 public nftCount;

    constructor() ERC1155("") {}

    function mint(address to, uint256 id, uint256 amount) external {
        _mint(to, id, amount, "");
    }

    function mintBatch(address to, uint256[] calldata ids, uint256[] calldata amounts) external {
        _mintBatch(to, ids, amounts, "");
    }

    function retire(uint256 id, uint256 amount, bytes calldata data) external {
        _burn(msg.sender, id, amount);
        emit RetiredVintage(msg.sender, id, amount, ++nftCount, data);
    }
}

/// @notice KlimaInfinity's retirement events: a TCO2 retired through Klima (tokens pulled, retired by Klima,
///         then CarbonRetired), or a bare CarbonRetired for credits whose contract is not followed.
contract StandInKlimaInfinity {
    event CarbonRetired(
        uint8 carbonBridge, address indexed retiringAddress, string retiringEntityString,
        address indexed beneficiaryAddress, string beneficiaryString, string retirementMessage,
        address indexed carbonPool, address carbonToken, uint256 retiredAmount
    );
    event CarbonRetired(
        uint8 carbonBridge, address indexed retiringAddress, string retiringEntityString,
        address indexed beneficiaryAddress, string beneficiaryString, string retirementMessage,
        address indexed carbonPool, address carbonToken, uint256 tokenId, uint256 retiredAmount
    );

    function toucanRetireExactTCO2(
        StandInTCO2 tco2, uint256 amount, address beneficiary, string calldata beneficiaryString,
        string calldata message
    ) external {
        tco2.transferFrom(msg.sender, address(this), amount);
        tco2.retire(amount);
        emit CarbonRetired(0, msg.sender, "", beneficiary, beneficiaryString, message, address(0), address(tco2), amount);
    }

    struct Retirement1155 {
        uint8 bridge;
        address token;
        uint256 tokenId;
        uint256 amount;
        address beneficiary;
        string beneficiaryString;
        string message;
    }

    function emitRetired1155(Retirement1155 calldata r) external {
        emit CarbonRetired(r.bridge, msg.sender, "", r.beneficiary, r.beneficiaryString, r.message, address(0), r.token,
                           r.tokenId, r.amount);
    }
}

/// @notice Carbonmark listings: no escrow; a fill moves the seller's tokens to the buyer (payment left out).
contract StandInCarbonmark {
    event ListingCreated(
        bytes32 id, address account, address token, uint256 tokenId, uint256 price, uint256 amount,
        uint256 minFillAmount, uint256 deadline
    );
    event ListingUpdated(
        bytes32 id, uint256 oldAmount, uint256 newAmount, uint256 oldUnitPrice, uint256 newUnitPrice,
        uint256 oldMinFillAmount, uint256 newMinFillAmount, uint256 oldDeadline, uint256 newDeadline
    );
    event ListingFilled(bytes32 id, address account, uint256 amount, uint256 totalCost);
    event ListingCancelled(bytes32 id);

    struct Listing {
        address seller;
        address token;
        uint256 tokenId;
        bool erc1155;
        uint256 price;
        uint256 amount;
        uint256 minFillAmount;
        uint256 deadline;
    }

    mapping(bytes32 => Listing) public listings;
    uint256 public nonce;

    function createListing(address token, uint256 tokenId, bool erc1155, uint256 amount, uint256 price,
                           uint256 minFillAmount, uint256 deadline) external returns (bytes32 id) {
        id = keccak256(abi.encode(msg.sender, token, tokenId, ++nonce));
        listings[id] = Listing(msg.sender, token, tokenId, erc1155, price, amount, minFillAmount, deadline);
        emit ListingCreated(id, msg.sender, token, tokenId, price, amount, minFillAmount, deadline);
    }

    function updateListing(bytes32 id, uint256 newAmount, uint256 newPrice, uint256 newMinFill, uint256 newDeadline) external {
        Listing storage l = listings[id];
        require(l.seller == msg.sender, "not seller");
        emit ListingUpdated(id, l.amount, newAmount, l.price, newPrice, l.minFillAmount, newMinFill, l.deadline, newDeadline);
        (l.amount, l.price, l.minFillAmount, l.deadline) = (newAmount, newPrice, newMinFill, newDeadline);
    }

    function fillListing(bytes32 id, uint256 amount) external {
        Listing storage l = listings[id];
        require(amount > 0 && amount <= l.amount, "amount");
        l.amount -= amount;
        if (l.erc1155) {
            IERC1155(l.token).safeTransferFrom(l.seller, msg.sender, l.tokenId, amount, "");
        } else {
            require(IERC20(l.token).transferFrom(l.seller, msg.sender, amount), "transfer");
        }
        emit ListingFilled(id, msg.sender, amount, amount * l.price / 1e18);
    }

    function cancelListing(bytes32 id) external {
        require(listings[id].seller == msg.sender, "not seller");
        delete listings[id];
        emit ListingCancelled(id);
    }
}

"""One settings object for every daemon.

Sources, strongest first: keyword arguments, environment (``CARBONLEDGER_<SECTION>_<FIELD>``, e.g.
``CARBONLEDGER_DATABASE_URL``; whole sections as JSON, e.g. ``CARBONLEDGER_CHAINS='{...}'``), the TOML file
(``--config``, ``CARBONLEDGER_CONFIG`` or ``./carbonledger.toml``). Every model forbids unknown keys, so a typo
is an error that names the key instead of a silently ignored setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from core.ratelimit import check_spec, proxy_networks

PROTOCOL_CONTRACTS = ("CarbonCredit", "Marketplace", "Escrow", "QRPayment", "IoTAnchor", "Auction")
ContractName = Literal["CarbonCredit", "Marketplace", "Escrow", "QRPayment", "IoTAnchor", "Auction"]
DEFAULT_CONFIG_FILE = "carbonledger.toml"


class ConfigError(Exception):
    """A configuration problem, worded for the person who wrote the config."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Strict):
    url: str | None = Field(
        None, repr=False, description="Postgres URL (postgresql://user@host:port/db). Empty: an embedded pgserver in `embedded_dir`."
    )
    embedded_dir: Path = Field(Path(".carbonledger/pgdata"), description="Data folder of the embedded Postgres.")
    statement_timeout_ms: int = Field(5000, ge=100, description="Statement timeout for API queries.")
    defer_indexes: bool = Field(True, description="An indexer starting on a database with no event or entity rows "
                                "drops those tables' non-unique indexes and builds them once it has caught up (a cold "
                                "backfill ~2x faster; API queries on those tables scan until then).")
    # `list[str] | str`: a single URL in the environment is read as itself (a list must be JSON there).
    read_url: list[str] | str = Field(
        default_factory=list, repr=False, description="Postgres streaming replica(s) the API reads from: one URL, or "
        "a list (TOML array; JSON array in the environment). Each request reads one replica (one snapshot); with "
        "none healthy, the primary (`url`). Empty: the API reads the primary.")
    replica_max_lag_s: float = Field(10.0, gt=0, description="A replica further behind the primary than this "
                                     "(WAL it has not replayed, judged by LSN, so an idle primary is no lag) is "
                                     "skipped until it catches up.")
    replica_check_s: float = Field(2.0, gt=0, description="How often the API checks each replica's health and lag "
                                   "(an unreachable one is retried at this pace).")

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        return _check_postgres_url(v, "database url")

    @field_validator("read_url", mode="before")
    @classmethod
    def _read_urls(cls, v: Any) -> Any:
        if v is None or v == "":
            return []
        if isinstance(v, str):
            v = [v]
        if isinstance(v, (list, tuple)):
            for i, u in enumerate(v):
                if isinstance(u, str):
                    _check_postgres_url(u, f"database read_url #{i + 1}")
        return list(v) if isinstance(v, tuple) else v

    @property
    def read_urls(self) -> list[str]:
        """read_url as a list (always one after validation)."""
        return [self.read_url] if isinstance(self.read_url, str) else list(self.read_url)


def _check_postgres_url(v: str, what: str) -> str:
    """`v` when it is a postgresql:// URL; the error names only its scheme (a URL may carry a password)."""
    scheme = v.split("://", 1)[0] if "://" in v else ""
    if scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
        raise ValueError(f"{what} must start with postgresql:// (got scheme {scheme or 'none'!r})")
    return v


class ContractSettings(_Strict):
    address: str | None = Field(None, description="Contract address (0x + 40 hex). Optional when `deployment` names it.")
    start_block: int = Field(0, ge=0, description="Block to start indexing from (the deploy block).")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None:
            return None
        from eth_utils import is_address, to_checksum_address

        if not is_address(v):
            raise ValueError(f"not an EVM address: {v!r}")
        return to_checksum_address(v)


class SubstrateAsset(_Strict):
    """The credit batch an Assets-pallet asset id stands for (family "substrate")."""

    project_id: str = Field(..., max_length=256, description="Registry project id of the batch.")
    vintage: int = Field(..., ge=0, le=65535, description="Vintage year.")
    methodology: str = Field("", max_length=256, description="Methodology, e.g. VM0038.")
    registry: str = Field("", max_length=256, description="Registry name, e.g. Verra.")
    serial_number: str = Field("", max_length=256, description="Registry serial number range.")
    metadata_hash: str = Field("0x" + "0" * 64, pattern=r"^0x[0-9a-fA-F]{64}$", description="32-byte hash of the "
                               "batch's off-chain metadata document.")


class InkContract(_Strict):
    """An ink! contract the substrate reader follows (its `Contracts.ContractEmitted` events)."""

    role: Literal["Escrow"] = Field(..., description="What the contract is to the protocol: `Escrow`, an order "
                                    "escrow emitting the events of contracts/substrate/escrow.json (the same events, fields "
                                    "in snake_case, as contracts/Escrow.sol).")
    metadata: str = Field(..., min_length=1, description="Path of the contract's ink! metadata JSON (cargo-contract's "
                          "`<name>.json`; ink! v3 to v5), relative to the working directory.")
    gas_limit: tuple[int, int] = Field((30_000_000_000, 1_048_576), description="The oracle's `Contracts.call` "
                                       "weight limit `[ref_time, proof_size]` for its writes to the contract (only "
                                       "the weight used is charged; the pre-check's dry run refuses a write that runs "
                                       "out of it, naming this key).")

    @field_validator("gas_limit")
    @classmethod
    def _weight(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not all(0 < x < 2**64 for x in v):
            raise ValueError("both parts of the weight must be between 1 and 2**64 - 1")
        return v


class MarketBatch(SubstrateAsset):
    """Registry details of one token id of a market's token contract (they are not in its events)."""

    decimals: int = Field(0, ge=0, le=36, description="Token decimals: one registry serial (one tonne) is "
                          "10**decimals base units (TCO2: 18).")


class MarketSettings(_Strict):
    """One contract of an existing carbon market, indexed by its real events (README "Index an existing market").

    `protocol` names a mapping shipped with carbonledger: an ABI in abis/markets/<protocol>.json and a handler
    module in indexer/handlers/ (checked when the chain's reader is built; an unknown name is an error listing the
    known ones)."""

    protocol: str = Field(..., pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Market protocol, e.g. toucan_tco2, "
                          "toucan_certificates, klima_infinity, icr_project, carbonmark.")
    address: str = Field(..., description="Contract address (0x + 40 hex).")
    start_block: int = Field(0, ge=0, description="Block to start indexing this contract from (its deploy block).")
    batches: dict[int, MarketBatch] = Field(default_factory=dict, description="Token contracts (toucan_tco2: token "
                                            "id 0; icr_project: its token ids): registry details per token id, "
                                            "with the serial range retirements consume.")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        from eth_utils import is_address, to_checksum_address

        if not is_address(v):
            raise ValueError(f"not an EVM address: {v!r}")
        return to_checksum_address(v)


# Keys only some families read; a key set (not its default) on a family that does not read it is an error.
_FAMILY_KEYS = {
    "evm": ("chain_id", "max_block_range", "deployment", "contracts", "markets"),
    "substrate": ("start_block", "ss58_format", "assets", "retirement_account", "anchor_senders", "ink_contracts"),
    "aptos": ("chain_id", "max_block_range", "start_block", "aptos_package", "fa_batches"),
}


# Networks carbonledger knows: `chains.<name>.preset` fills these in. Polkadot Hub and its siblings run the Solidity
# contracts on pallet-revive behind its Ethereum JSON-RPC adapter (eth-rpc), so they are EVM chains here; their
# `finalized` tag is the relay chain's GRANDPA finality, followed by default (a parachain's best block can be
# replaced). Chain ids as the networks publish them (README "Substrate / Polkadot" says what is known and untested).
PRESETS: dict[str, dict[str, Any]] = {
    name: {"family": "evm", "chain_id": chain_id, "use_finalized_tag": True, "follow": "finalized"}
    for name, chain_id in (("polkadot-hub", 420420419), ("kusama-hub", 420420418),
                           ("polkadot-hub-testnet", 420420417), ("westend-hub", 420420421))
}
_PRESET_FIXED = ("family", "chain_id")  # what identifies the network: a value given beside the preset must agree


class ChainSettings(_Strict):
    preset: Literal[tuple(PRESETS)] | None = Field(None, description="A known network whose settings are filled in "  # type: ignore[valid-type]
                                                   "(keys given beside it override, except family and chain_id, "
                                                   "which must agree): " + ", ".join(
                                                       f"{k} (chain id {v['chain_id']})" for k, v in PRESETS.items())
                                                   + "; EVM on pallet-revive, following finalized blocks.")
    family: Literal["evm", "substrate", "aptos"] = Field("evm", description="Chain family: evm (JSON-RPC), "
                                                         "substrate (a Substrate node's JSON-RPC; the Assets pallet "
                                                         "as the credit ledger) or aptos (a fullnode's REST API; the "
                                                         "Move package in contracts/aptos).")
    rpc_url: AnyHttpUrl = Field(..., repr=False, description="JSON-RPC endpoint (http/https; Substrate nodes serve it "
                                "on their ws port too).")
    ws_url: str | None = Field(None, repr=False, description="Optional WebSocket endpoint for new heads (evm: "
                               "newHeads; substrate: chain_subscribeNewHeads or FinalizedHeads).")
    chain_id: int | None = Field(None, description="Expected chain id; the node must match or startup fails.")
    follow: Literal["best", "finalized"] | None = Field(None, description="Which head the indexer follows: best (the "
                                                        "newest block; reorgs are undone) or finalized (final blocks "
                                                        "only). Unset: best on evm, finalized on substrate and aptos.")
    finality_depth: int = Field(12, ge=0, description="Blocks below head treated as final when the node has no `finalized` tag.")
    use_finalized_tag: bool = Field(True, description="Ask the node for its finalized block (evm: the `finalized` "
                                    "tag; substrate: chain_getFinalizedHead) instead of head - finality_depth.")
    poll_interval_s: float = Field(1.0, gt=0, description="Longest head poll interval (the poll backs off to it "
                                   "while no block comes).")
    poll_min_interval_s: float = Field(0.02, gt=0, description="Shortest head poll interval: right after a new block "
                                       "(doubling from it up to poll_interval_s while no block comes), and while the "
                                       "next is due by the chain's observed block time (then every block time / 40, "
                                       "at least this).")
    shrink_grace_s: float = Field(10.0, ge=0, description="How long the node may show a head below our cursor, with "
                                  "no block at the cursor height and the same head block, before the chain is taken "
                                  "to be shortened and unwound to that head (shorter: lagging node, wait).")
    max_block_range: int = Field(2000, ge=1, description="Upper bound of the adaptive eth_getLogs range.")
    request_timeout_s: float = Field(10.0, gt=0, description="Per-request RPC timeout.")
    retries: int = Field(6, ge=0, description="Retries per RPC request (exponential backoff).")
    deployment: Path | None = Field(None, description="deployments/<chain>.json written by `carbonledger deploy`.")
    contracts: dict[ContractName, ContractSettings] = Field(default_factory=dict, description="Contract addresses.")
    markets: list[MarketSettings] = Field(default_factory=list, max_length=10_000, description="evm: contracts of "
                                          "existing carbon markets (Toucan, Klima, ICR, Carbonmark) to index by "
                                          "their real events.")
    start_block: int = Field(0, ge=0, description="substrate: block to start indexing from (at or before the "
                             "creation of every mapped asset); aptos: the version to start from (at or before the "
                             "package's publication, and not below the node's oldest_ledger_version).")
    ss58_format: int | None = Field(None, ge=0, le=16383, description="substrate: expected SS58 prefix of the "
                                    "runtime (System.SS58Prefix); the node must match or startup fails.")
    assets: dict[int, SubstrateAsset] = Field(default_factory=dict, description="substrate: Assets-pallet asset id "
                                              "-> the credit batch it stands for.")
    retirement_account: str | None = Field(None, description="substrate: the account credits are sent to when "
                                           "retired (SS58 or 0x public key). Unset: the keyless account of PalletId "
                                           "`cl/retir` (nobody holds its key).")
    anchor_senders: list[str] = Field(default_factory=list, description="substrate: accounts (SS58 or 0x public "
                                      "key) whose `anchor` remarks are IoT anchors (the oracle's).")
    ink_contracts: dict[str, InkContract] = Field(default_factory=dict, description="substrate: ink! contract "
                                                  "address (SS58 or 0x public key) -> its role and metadata. Needs "
                                                  "the contracts pallet in the runtime.")
    aptos_package: str | None = Field(None, pattern=r"^0x[0-9a-fA-F]{1,64}$", description="aptos: the account the "
                                      "Move package (contracts/aptos) is published at.")
    fa_batches: dict[str, int] = Field(default_factory=dict, description="aptos: fungible-asset metadata address -> "
                                       "credit batch id, for credits issued as plain fungible assets by others "
                                       "(followed through 0x1::fungible_asset Deposit/Withdraw).")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") is None or data["preset"] not in PRESETS:
            return data  # no preset, or one the Literal refuses with the list of names
        values = PRESETS[data["preset"]]
        for key in _PRESET_FIXED:
            if data.get(key) is not None and data[key] != values[key]:
                raise ValueError(f"{key} = {data[key]!r} contradicts preset = {data['preset']!r} ({key} "
                                 f"{values[key]!r}); remove one of them")
        return {**values, **data}

    @model_validator(mode="after")
    def _family_keys(self) -> "ChainSettings":
        mine = _FAMILY_KEYS[self.family]
        wrong = sorted({k for keys in _FAMILY_KEYS.values() for k in keys} - set(mine))
        for key in wrong:  # a default value is fine (a dump of the settings repeats every key)
            if getattr(self, key) != type(self).model_fields[key].get_default(call_default_factory=True):
                raise ValueError(f"{key} does not apply to family = {self.family!r}")
        if self.family == "aptos" and not self.aptos_package:
            raise ValueError("aptos_package is required for family = 'aptos'")
        seen: set[str] = set()
        for i, m in enumerate(self.markets):
            if m.address in seen:
                raise ValueError(f"markets[{i}]: address {m.address} is listed twice")
            seen.add(m.address)
        if any(not 0 <= i < 2**32 for i in self.assets):
            raise ValueError("assets: an asset id is a u32 (0 to 4294967295)")
        return self

    @property
    def following(self) -> str:
        """The head the indexer follows ("best" or "finalized"), the family's default where unset."""
        return self.follow or ("best" if self.family == "evm" else "finalized")


class SignerSettings(_Strict):
    private_key: SecretStr | None = Field(None, description="Hex private key; set it from the environment: CARBONLEDGER_ORACLE_SIGNER='{\"private_key\": \"0x…\"}'.")
    keystore: Path | None = Field(None, description="eth-account encrypted keystore JSON; passphrase from `passphrase`.")
    passphrase: SecretStr | None = Field(None, description="Keystore passphrase (env only, please).")


class FiatRate(_Strict):
    """How a fiat currency maps to on-chain prices, as exact integers (no float touches an amount): a payment of
    `n` minor units pays for `n * wei_per_unit / 10**decimals` wei of listing or order price."""

    decimals: int = Field(2, ge=0, le=6, description="Decimals of the currency's minor unit in the provider's "
                          "integer amounts (Stripe: 2 for usd and kes, 0 for jpy).")
    wei_per_unit: int = Field(..., gt=0, lt=2**128, description="On-chain price units (wei of the chain's native "
                              "token, the unit of listing and order prices) that one whole currency unit buys. Write "
                              "values beyond 2^63 as strings.")

    @field_validator("wei_per_unit", mode="before")
    @classmethod
    def _exact(cls, v: Any) -> Any:
        if isinstance(v, float) or (isinstance(v, str) and not (v.isascii() and v.isdigit() and len(v) <= 40)):
            raise ValueError("wei_per_unit must be an integer (or a string of digits), never a float")
        return v


def _callback_path(url: Any) -> str | None:
    """The secret path segment of an M-Pesa callback URL (…/webhooks/mpesa/<segment>, percent-decoded as the
    router decodes it), or None when the URL does not have that shape."""
    from urllib.parse import unquote, urlsplit

    text = url.get_secret_value() if isinstance(url, SecretStr) else url
    if not isinstance(text, str):
        return None
    head, _, segment = urlsplit(text).path.rpartition("/")
    return unquote(segment) if head.endswith("/webhooks/mpesa") and segment else None


class OracleSettings(_Strict):
    host: str = Field("127.0.0.1", description="Bind address of the oracle's HTTP ingress.")
    port: int = Field(8081, ge=0, le=65535, description="Port of the oracle's HTTP ingress (and its /health, /metrics).")
    chain: str | None = Field(None, description="Which configured chain the oracle writes to (default: the first).")
    signer: SignerSettings = Field(default_factory=SignerSettings)
    stripe_webhook_secrets: list[SecretStr] = Field(default_factory=list, description="whsec_… secrets (several during rotation).")
    stripe_tolerance_s: int = Field(300, ge=1, description="Stripe signature timestamp window.")
    stripe_api_key: SecretStr | None = Field(None, description="Stripe API key: every PaymentIntent is re-fetched with it before it is acted on (and reconciliation lists them).")
    stripe_api_base: str | None = Field(None, description="Stripe API base URL (localstripe in tests).")
    mpesa_callback_secret: SecretStr | None = Field(None, description="Secret path segment of the M-Pesa callback URL "
                                                    "(the oracle serves the callback on /webhooks/mpesa/<secret>); unset: "
                                                    "taken from `mpesa_callback_url`.")
    mpesa_allowed_ips: list[str] = Field(default_factory=list, description="Daraja callback source IPs/CIDRs.")
    mpesa_api_base: str = Field("https://sandbox.safaricom.co.ke", description="Daraja API base URL.")
    confirmations: int = Field(1, ge=0, description="Confirmations before an intent is confirmed.")
    max_in_flight: int = Field(16, ge=1, description="Transactions in flight per signing key.")
    fee_bump_after_s: float = Field(30.0, gt=0, description="Re-price a pending tx after this long.")
    stall_bump_after_s: float = Field(3.0, gt=0, description="Re-price the next tx to be mined at once when the node "
                                      "has not counted it as pending for this long: the node lost it, or holds it as "
                                      "not executable (anvil, about one 300-payment run in ten). EVM; only with a node "
                                      "seen to count pending transactions (some answer `pending` as `latest`).")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Request body cap for every ingress endpoint.")
    stripe_future_skew_s: int = Field(60, ge=0, description="How far in the future a Stripe signature timestamp may be.")
    mpesa_consumer_key: SecretStr | None = Field(None, description="Daraja app consumer key (OAuth).")
    mpesa_consumer_secret: SecretStr | None = Field(None, description="Daraja app consumer secret (OAuth).")
    mpesa_shortcode: str = Field("174379", description="Daraja business short code (STK push / query).")
    mpesa_passkey: SecretStr | None = Field(None, description="Daraja STK passkey (password = b64(shortcode+passkey+timestamp)).")
    mpesa_callback_url: SecretStr | None = Field(None, description="Public URL Daraja calls back; it must end with "
                                                 "/webhooks/mpesa/<mpesa_callback_secret> (checked at start-up). A "
                                                 "secret, since it holds the secret path.")
    iot_device_keys: dict[str, SecretStr] = Field(default_factory=dict, description="IoT device id -> HMAC-SHA256 key.")
    iot_max_skew_s: int = Field(300, ge=1, description="Reading timestamps further than this in the future are refused.")
    iot_max_age_s: int = Field(7 * 86400, ge=1, description="Reading timestamps older than this are refused.")
    anchor_interval_s: float = Field(60.0, gt=0, description="How often pending IoT readings are anchored as one Merkle root.")
    anchor_max_leaves: int = Field(4096, ge=1, le=2**32 - 1, description="Most readings under one anchor.")
    merchant_tokens: dict[str, SecretStr] = Field(default_factory=dict, description="Merchant name -> bearer token (QR orders and settlements, M-Pesa STK push).")
    merchant_payout_addresses: dict[str, str] = Field(default_factory=dict, description="Merchant name -> payout address: "
                                                      "the only beneficiary of that merchant's QR orders (bound when the order "
                                                      "is created). A merchant without one cannot create QR orders.")
    verifier_tokens: dict[str, SecretStr] = Field(default_factory=dict, description="Verifier name -> bearer token (verification requests and approvals).")
    verifier_max_approval_amount: int = Field(1_000_000, ge=1, description="Most credits (token units) one approval may mint.")
    verifier_max_daily_amount: int = Field(10_000_000, ge=1, description="Most credits (token units) each verifier may "
                                           "approve in any 24 hours.")
    operator_tokens: dict[str, SecretStr] = Field(default_factory=dict, description="Operator name -> bearer token: reads "
                                                  "every intent in full (GET /intents/{key}).")
    trusted_proxies: list[str] = Field(default_factory=list, description="Reverse proxies (IPs/CIDRs) whose X-Forwarded-For "
                                       "names the client, for rate limits and the M-Pesa allowlist. Set it when the "
                                       "oracle is behind a proxy, or every client counts as the proxy.")
    rate_limit: str | None = Field("1200/minute", description="Requests per client to every non-webhook route, e.g. "
                                   "'1200/minute' (empty: unlimited; per oracle process).")
    webhook_rate_limit: str | None = Field("6000/minute", description="Requests per client to the Stripe and M-Pesa "
                                           "webhooks (providers deliver in bursts from few addresses).")
    auth_failure_limit: str | None = Field("20/minute", description="Failed authentications per client (bad token, "
                                           "signature, device MAC, secret path, source address); past it the client "
                                           "gets 429 on every authenticated route without its credential being checked.")
    lease_heartbeat_s: float = Field(1.0, gt=0, description="How often the nonce owner proves its lease is alive.")
    poll_interval_s: float = Field(0.05, gt=0, description="Sender idle wait between rounds (new blocks, new intents).")
    gas_multiplier: float = Field(1.25, ge=1.0, description="Gas limit = estimate x this.")
    reconcile_interval_s: float = Field(300.0, gt=0, description="Stripe / M-Pesa reconciliation and stuck-tx watch period.")
    reconcile_lookback_s: int = Field(3 * 86400, ge=60, description="How far back reconciliation lists succeeded PaymentIntents.")
    stuck_after_s: float = Field(600.0, gt=0, description="A sent tx older than this is reported as stuck.")
    stripe_livemode: bool = Field(False, description="Act only on Stripe PaymentIntents with this livemode (false: test-mode payments; a mismatch is flagged).")
    fiat_bid_max_hold_s: int = Field(6 * 86400, ge=60, description="A fiat bid (a card hold) is refused, flagged "
                                     "`hold_would_lapse`, on an auction ending later than this: card authorisations "
                                     "lapse after about 7 days, and a lapsed winning hold can never be captured.")
    fiat_rates: dict[str, FiatRate] = Field(default_factory=dict, description="Lowercase ISO currency -> its rate against on-chain prices; a payment in a currency not listed is flagged, never written.")
    payment_recheck_s: float = Field(5.0, gt=0, description="How often payments whose listing/order is not indexed yet are evaluated again.")
    auction_keeper_s: float = Field(15.0, gt=0, description="How often the keeper settles ended auctions (Auction.settle, once each) and reports those ended longer than stuck_after_s ago and still open.")
    payment_pending_max_age_s: int = Field(86400, ge=60, description="A payment whose listing/order is still not indexed after this long is flagged target_not_indexed.")

    @field_validator("fiat_rates")
    @classmethod
    def _currencies(cls, v: dict[str, FiatRate]) -> dict[str, FiatRate]:
        for code in v:
            if len(code) != 3 or not code.isascii() or not code.isalpha() or not code.islower():
                raise ValueError(f"currency {code!r} must be a lowercase ISO 4217 code such as 'usd' or 'kes'")
        return v


    @field_validator("merchant_payout_addresses")
    @classmethod
    def _payout_addresses(cls, v: dict[str, str]) -> dict[str, str]:
        from eth_utils import is_address

        for name, address in v.items():
            if not (isinstance(address, str) and address.startswith("0x") and is_address(address)) or int(address, 16) == 0:
                raise ValueError(f"payout address of merchant {name!r} is not a (non-zero) EVM address")
        return {name: address.lower() for name, address in v.items()}

    @field_validator("trusted_proxies", "mpesa_allowed_ips")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        from core.ratelimit import proxy_networks

        proxy_networks(v)
        return v

    @field_validator("rate_limit", "webhook_rate_limit", "auth_failure_limit")
    @classmethod
    def _limit(cls, v: str | None) -> str | None:
        from core.ratelimit import check_spec

        return check_spec(v)

    @model_validator(mode="before")
    @classmethod
    def _callback_secret_from_url(cls, data: Any) -> Any:
        """Given the callback URL and no secret, the secret is the URL's last path segment (one value to keep right)."""
        if isinstance(data, dict) and data.get("mpesa_callback_url") and not data.get("mpesa_callback_secret"):
            path = _callback_path(data["mpesa_callback_url"])
            if path is not None:
                data = {**data, "mpesa_callback_secret": path}
        return data

    @model_validator(mode="after")
    def _callback_url_reaches_the_route(self) -> "OracleSettings":
        """Daraja calls the URL; the oracle serves /webhooks/mpesa/<secret>: if they differ, every callback gets 404
        and nothing says why. Neither value is printed: both are secrets."""
        if self.mpesa_callback_url is not None and (
                self.mpesa_callback_secret is None
                or _callback_path(self.mpesa_callback_url) != self.mpesa_callback_secret.get_secret_value()):
            raise ValueError("oracle.mpesa_callback_url must end with /webhooks/mpesa/ followed by "
                             "oracle.mpesa_callback_secret (the route this oracle serves the callback on); they do not "
                             "match, so every M-Pesa callback would get 404")
        return self

    @model_validator(mode="after")
    def _credentials(self) -> "OracleSettings":
        unknown = sorted(set(self.merchant_payout_addresses) - set(self.merchant_tokens))
        if unknown:
            raise ValueError(f"merchant_payout_addresses names {unknown[0]!r}, which has no merchant_tokens entry")
        seen: set[str] = set()
        for group in (self.merchant_tokens, self.verifier_tokens, self.operator_tokens):
            for token in group.values():
                value = token.get_secret_value()
                if not value or value in seen:  # one token, one identity: four eyes and ownership depend on it
                    raise ValueError("every merchant, verifier and operator token must be non-empty and distinct")
                seen.add(value)
        return self


class ApiSettings(_Strict):
    host: str = Field("127.0.0.1", description="Bind address of the GraphQL API.")
    port: int = Field(8080, ge=0, le=65535, description="Port of the GraphQL API.")
    max_page_size: int = Field(1000, ge=1, description="Largest `first` a connection accepts.")
    max_depth: int = Field(10, ge=1, description="Deepest field nesting of an operation, fragments expanded.")
    max_aliases: int = Field(30, ge=1, description="Most aliased fields in an operation, fragments expanded.")
    max_selections: int = Field(500, ge=10, description="Most fields, fragment spreads and inline fragments in an "
                                "operation once its fragments are expanded (a fragment spread twice counts twice).")
    max_tokens: int = Field(2000, ge=10, description="Token limit per query document (comments count).")
    max_query_bytes: int = Field(32_768, ge=1024, description="Longest query document in UTF-8 bytes, comments and "
                                 "whitespace included; a longer one is refused before it is parsed "
                                 "(MAX_QUERY_BYTES_EXCEEDED).")
    max_merge_checks: int = Field(10_000, ge=100, description="Work budget (about one unit per pair of same-named "
                                  "fields or fragments compared) of the rule checking that fields of one response "
                                  "name can be merged; a document over it is refused (QUERY_TOO_COMPLEX).")
    validation_timeout_ms: int = Field(1000, ge=10, description="Longest wait for a new document to be parsed, "
                                       "limited and validated (off the event loop); past it: TIME_BUDGET_EXCEEDED.")
    admission_queue: int = Field(16, ge=1, description="Most new documents being checked or waiting to be checked "
                                 "at once, all clients together (one thread checks them); past it a new document is "
                                 "refused at once (SERVICE_BUSY); documents checked before are answered as ever.")
    admission_per_client: int = Field(4, ge=1, description="Most new documents of one client being checked or "
                                      "waiting at once (a check its request stopped waiting for still counts until "
                                      "it ends); past it: SERVICE_BUSY.")
    request_timeout_ms: int = Field(10_000, ge=100, description="Time budget of a request's execution: after it no "
                                    "SQL statement starts and no object is completed (TIME_BUDGET_EXCEEDED).")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest JSON POST /graphql body (413 above).")
    pool_size: int = Field(10, ge=1, description="Database connections per API worker process.")
    generic_plans: bool = Field(True, description="Plan each API query once per connection (Postgres "
                                "plan_cache_mode=force_generic_plan) instead of re-planning batched DataLoader queries "
                                "on every request.")
    answer_cache_mb: int = Field(64, ge=0, description="Memory per API worker process for answers kept for "
                                 "repeated questions about data that has not changed (keyed by the indexer cursors "
                                 "read in the request's own snapshot, so never stale; gqlapi.answers); 0: none.")
    graphiql: bool = Field(True, description="Serve the GraphiQL IDE on GET /graphql.")
    rate_limit: str | None = Field("1200/minute", description="Requests to /graphql per client and worker process "
                                   "(moving window, e.g. '1200/minute'; empty: none); over it: 429 with Retry-After.")
    rate_limit_exempt: list[str] = Field(["127.0.0.0/8", "::1/128"], description="Clients (after trusted proxies) "
                                         "never rate-limited: by default loopback (local tools, bench/api.py).")
    trusted_proxies: list[str] = Field([], description="Proxies (addresses or CIDRs) whose X-Forwarded-For names "
                                       "the client; behind a proxy on the same host list it here, or its clients "
                                       "all look like loopback (exempt).")
    live: bool = Field(True, description="Serve live subscriptions (graphql-transport-ws on /graphql, Server-Sent "
                       "Events on /graphql/stream), fed by one Postgres LISTEN connection per worker process.")
    live_queue: int = Field(256, ge=1, description="Messages one live subscription may have waiting; past it the "
                            "client is a slow consumer and is disconnected (close code 4420; SSE: the stream ends).")
    live_per_connection: int = Field(20, ge=1, description="Most operations at once on one WebSocket connection.")
    live_per_client: int = Field(100, ge=1, description="Most live subscriptions of one client (address after "
                                 "trusted proxies) per worker process.")
    live_max_subscriptions: int = Field(10_000, ge=1, description="Most live subscriptions per worker process.")
    live_max_replay: int = Field(10_000, ge=1, description="Most messages a subscription resuming with `since` is "
                                 "sent from history; more is refused (resume from a later block).")
    live_max_message_bytes: int = Field(65_536, ge=1024, description="Largest WebSocket message a client may send.")
    live_listen_url: str | None = Field(None, repr=False, description="Postgres URL of the live listener, on "
                                        "the primary (NOTIFY is not replicated; nor does LISTEN pass a transaction-mode "
                                        "pooler). Unset: database.url. Reads on database.read_url replicas wait for "
                                        "each notice's transaction to be replayed.")
    live_token: SecretStr | None = Field(None, description="When set, live clients must present it: "
                                   "graphql-transport-ws `connection_init` payload {\"token\": ...}, SSE header "
                                   "`Authorization: Bearer ...` (else 4403 / 401). Unset: open, like queries.")

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, v: str | None) -> str | None:
        return check_spec(v)

    @field_validator("rate_limit_exempt", "trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        proxy_networks(v)
        return v


class IndexerSettings(_Strict):
    host: str = Field("127.0.0.1", description="Bind address of the indexer's health/metrics endpoint.")
    port: int = Field(8082, ge=0, le=65535, description="Port of the indexer's /health, /ready and /metrics.")


class Settings(BaseSettings):
    """Everything carbonledger reads from config, env and flags."""

    model_config = SettingsConfigDict(
        env_prefix="CARBONLEDGER_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        frozen=True,
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    chains: dict[str, ChainSettings] = Field(default_factory=dict)
    indexer: IndexerSettings = Field(default_factory=IndexerSettings)
    oracle: OracleSettings = Field(default_factory=OracleSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level of the daemons' JSON log lines.")

    @model_validator(mode="after")
    def _chain_names(self) -> "Settings":
        for name in self.chains:
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"chain name {name!r} must be alphanumeric (with - or _)")
        if self.oracle.chain is not None and self.oracle.chain not in self.chains:
            raise ValueError(f"oracle.chain {self.oracle.chain!r} is not one of the configured chains {sorted(self.chains)}")
        return self

    toml_file: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_file))
        return tuple(sources)


def redact_url(url: str, *, path: bool = False) -> str:
    """`url` with the password of its user info and any `password=` query parameter replaced by ***; with
    `path=True` also the path and query (RPC providers put API keys there: https://host/v2/<key>)."""
    import re

    url = re.sub(r"^([^:/?#]+://[^:@/?#]*):[^@/?#]*@", r"\1:***@", url)
    if path:
        url = re.sub(r"^([^:/?#]+://[^/?#]*)[/?#].+$", r"\1/***", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


ENV_PREFIX = "CARBONLEDGER_"
# Variables of ours that are not settings (read elsewhere): never reported as typos.
OTHER_ENV = {"CONFIG", "SIGNER_KEY", "SIGNER_PASSPHRASE", "DEPLOYER_KEY", "FIXTURES", "TEST_DATABASE_URL", "TEST_SEED",
             "PG_BIN"}


def _env_names() -> dict[str, str]:
    """Every CARBONLEDGER_* variable that names a setting -> the dotted setting it sets."""
    out = {}
    for name, field in Settings.model_fields.items():
        out[ENV_PREFIX + name.upper()] = name
        sub = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else None
        for child in (sub.model_fields if sub is not None else {}):
            out[f"{ENV_PREFIX}{name.upper()}_{child.upper()}"] = f"{name}.{child}"
    return out


def _unknown_env() -> str | None:
    """The first CARBONLEDGER_* variable that is no setting (a typo), worded with the closest real name."""
    import difflib

    known = _env_names()
    for var in sorted(os.environ):
        up = var.upper()
        if not up.startswith(ENV_PREFIX) or up in known or up[len(ENV_PREFIX):] in OTHER_ENV:
            continue
        if up.startswith(ENV_PREFIX + "CHAINS_"):
            continue  # one chain as JSON: CARBONLEDGER_CHAINS_<NAME>
        close = difflib.get_close_matches(up, list(known) + [ENV_PREFIX + o for o in OTHER_ENV], n=1, cutoff=0.75)
        return f"environment variable {var} is not a setting" + (f" (did you mean {close[0]}?)" if close else "")
    return None


def _describe(err: ValidationError, source: str) -> str:
    """Each error by its dotted key, and by the environment variable that set it where one did (a typo there is
    the variable's, not the config file's)."""
    import difflib

    env = {k.upper(): k for k in os.environ}
    known = _env_names()
    lines, from_file = [], False
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        where = ".".join(loc) or "(top level)"
        var = next((env[v] for v in (ENV_PREFIX + "_".join(loc[:i]).upper() for i in range(len(loc), 0, -1)) if v in env),
                   None)
        from_file = from_file or var is None
        if e["type"] == "extra_forbidden":
            siblings = [k.rsplit(".", 1)[-1] for k in known.values() if k.rsplit(".", 1)[0] == ".".join(loc[:-1])]
            close = difflib.get_close_matches(loc[-1], siblings, n=1) if loc else []
            text = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
        else:
            text = e["msg"]
        lines.append(f"{where}: {text}" + (f" (from environment variable {var})" if var else ""))
    return f"invalid config{source if from_file else ''}: " + "; ".join(lines)


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load settings from `path` (or CARBONLEDGER_CONFIG, or ./carbonledger.toml when present) plus env.

    Raises ConfigError naming the offending key(s).
    """
    chosen = path or os.environ.get("CARBONLEDGER_CONFIG")
    if chosen is None and Path(DEFAULT_CONFIG_FILE).exists():
        chosen = DEFAULT_CONFIG_FILE
    toml_path = Path(chosen) if chosen else None
    if toml_path is not None and not toml_path.exists():
        raise ConfigError(f"config file {str(toml_path)!r} does not exist")

    class _Loaded(Settings):
        toml_file = toml_path

    typo = _unknown_env()
    if typo is not None:
        raise ConfigError(typo)
    try:
        loaded = _Loaded(**overrides)
    except ValidationError as err:
        raise ConfigError(_describe(err, f" in {toml_path}" if toml_path else "")) from None
    except Exception as err:  # e.g. TOML syntax errors
        raise ConfigError(f"cannot read config {toml_path}: {err}") from None
    return loaded

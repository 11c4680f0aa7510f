"""`family = "substrate"` chains: family-specific keys, accounts checked at load, dumps that load again."""

from __future__ import annotations

import json

import pytest

from chains.substrate.mapping import follow_from
from core.config import ConfigError, Settings, load_settings

ALICE = "HNZata7iMYWmk5RvZRTiAsSDhV8366zq2YGb3tLH5Upf74F"


def chain(**kw):
    return {"family": "substrate", "rpc_url": "http://127.0.0.1:8000", **kw}


def test_a_substrate_chain_with_its_asset_mapping():
    s = Settings(chains={"ah": chain(assets={"1001": {"project_id": "VCS-1001", "vintage": 2021}},
                                     anchor_senders=[ALICE], ss58_format=2)})
    cs = s.chains["ah"]
    assert cs.following == "finalized" and Settings(chains={"e": {"rpc_url": "http://x"}}).chains["e"].following == "best"
    follow = follow_from(cs)
    assert follow.assets[1001].project_id == "VCS-1001"
    assert follow.anchor_senders == {"0xd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"}
    # what index_env and `carbonledger config` print loads again (defaults of the other family included)
    dumped = json.loads(json.dumps({n: c.model_dump(mode="json") for n, c in s.chains.items()}))
    assert Settings(chains=dumped).chains["ah"] == cs
    evm = Settings(chains={"e": {"rpc_url": "http://x"}})
    assert Settings(chains=json.loads(json.dumps({"e": evm.chains["e"].model_dump(mode="json")}))).chains == evm.chains


@pytest.mark.parametrize("cfg, names", [
    (chain(chain_id=1), "chain_id does not apply to family = 'substrate'"),
    (chain(contracts={"CarbonCredit": {"address": "0x" + "11" * 20}}), "contracts does not apply"),
    ({"rpc_url": "http://x", "assets": {"1": {"project_id": "p", "vintage": 1}}}, "assets does not apply to family = 'evm'"),
    ({"rpc_url": "http://x", "anchor_senders": [ALICE]}, "anchor_senders does not apply"),
    (chain(assets={"4294967296": {"project_id": "p", "vintage": 1}}), "asset id is a u32"),
    (chain(assets={"1": {"project_id": "p", "vintage": 1, "metadata_hash": "0x12"}}), "metadata_hash"),
    (chain(follow="latest"), "follow"),
    (chain(asets={}), "chains.c.asets: unknown key"),
])
def test_errors_name_the_key(cfg, names):
    with pytest.raises(ConfigError, match=names):
        load_settings(None, chains={"c": cfg})


@pytest.mark.parametrize("cfg, names", [
    (chain(anchor_senders=["5Gnope"]), "chains.c.anchor_senders: not an SS58 address"),
    (chain(retirement_account="0x12"), "chains.c.retirement_account: not a 32-byte public key"),
])
def test_accounts_are_checked_by_the_family_naming_the_key(cfg, names):
    """SS58 is the Substrate family's knowledge (chains.substrate), checked where the chain is built and by
    `carbonledger config`, not by the ground's settings."""
    from chains.substrate.accounts import check_settings

    cs = load_settings(None, chains={"c": cfg}).chains["c"]
    with pytest.raises(ConfigError, match=names):
        check_settings(cs, "c")

from __future__ import annotations

import json
import logging
import pickle

import pytest
from eth_account import Account

from core.config import ConfigError
from core.secrets import PrivateKey, private_key_from_env

KEY = "0x" + "42" * 32


def test_repr_and_format_hide_the_key():
    k = PrivateKey(KEY)
    for shown in (repr(k), str(k), f"{k}", f"{k!r}", "%s" % (k,)):
        assert "42" * 32 not in shown and k.address in shown
    assert k.reveal() == bytes.fromhex("42" * 32)


def test_key_never_in_logs_or_pickles(caplog):
    k = PrivateKey(KEY)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").info("signer %s", k, extra={"k": k})
    assert "42" * 32 not in caplog.text
    with pytest.raises(TypeError):
        pickle.dumps(k)


def test_bad_keys_are_rejected_without_echo(monkeypatch):
    with pytest.raises(ValueError) as err:
        PrivateKey("0x" + "zz" * 32)
    assert "zz" not in str(err.value)
    monkeypatch.setenv("CL_TEST_KEY", "0x1234")
    with pytest.raises(ConfigError, match="CL_TEST_KEY"):
        private_key_from_env("CL_TEST_KEY")


def test_keystore_roundtrip(tmp_path):
    ks = tmp_path / "key.json"
    ks.write_text(json.dumps(Account.encrypt(KEY, "pw", iterations=2)))
    assert PrivateKey.from_keystore(ks, "pw").address == Account.from_key(KEY).address
    with pytest.raises(ValueError, match="wrong passphrase"):
        PrivateKey.from_keystore(ks, "nope")

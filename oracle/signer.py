"""Where the oracle's signing key comes from: env, config, or an eth-account encrypted keystore.

The key is only ever held as `core.secrets.PrivateKey` (its repr shows the address, never the key) and
revealed inside `EvmWriter.sign`.
"""

from __future__ import annotations

import os

from core.config import ConfigError, OracleSettings
from core.preflight import OperatorError
from core.secrets import PrivateKey, private_key_from_env

ENV_KEY = "CARBONLEDGER_SIGNER_KEY"  # not CARBONLEDGER_ORACLE_*: settings would claim it
ENV_PASSPHRASE = "CARBONLEDGER_SIGNER_PASSPHRASE"


class SignerError(OperatorError):
    """No usable key; the message says what is wrong (and never contains key material)."""

    def __init__(self, what: str, fix: str = "give the oracle its signing key: CARBONLEDGER_SIGNER_KEY=0x..., or "
                 "oracle.signer.keystore with CARBONLEDGER_SIGNER_PASSPHRASE") -> None:
        super().__init__(what, fix)


def load_signer(settings: OracleSettings) -> PrivateKey:
    """Env CARBONLEDGER_SIGNER_KEY, else oracle.signer.private_key, else oracle.signer.keystore with the
    passphrase from CARBONLEDGER_SIGNER_PASSPHRASE or oracle.signer.passphrase."""
    try:
        key = private_key_from_env(ENV_KEY)
    except (ValueError, ConfigError) as err:
        raise SignerError(str(err)) from None
    if key is not None:
        return key
    s = settings.signer
    if s.private_key is not None:
        try:
            return PrivateKey(s.private_key.get_secret_value())
        except ValueError as err:
            raise SignerError(f"oracle.signer.private_key: {err}") from None
    if s.keystore is not None:
        phrase = os.environ.get(ENV_PASSPHRASE) or (s.passphrase.get_secret_value() if s.passphrase else None)
        if not phrase:
            raise SignerError(f"oracle.signer.keystore is set but no passphrase: set {ENV_PASSPHRASE}")
        try:
            return PrivateKey.from_keystore(s.keystore, phrase)
        except (OSError, ValueError, ConfigError) as err:
            raise SignerError(str(err)) from None
    raise SignerError(f"no signing key: set {ENV_KEY}, oracle.signer.private_key or oracle.signer.keystore")

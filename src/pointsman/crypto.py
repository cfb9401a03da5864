"""Encryption of stored secrets.

Secrets are encrypted with Fernet before they reach the store. Several keys
may be configured for rotation: the first encrypts, every key decrypts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from pointsman.errors import SecretUnreadableError

log = logging.getLogger(__name__)

KEY_FILE_NAME = "secret.key"


class SecretBox:
    def __init__(self, keys: Sequence[str]):
        if not keys:
            raise ValueError("at least one secret key is needed")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def encrypt(self, secrets: dict[str, str]) -> str | None:
        if not secrets:
            return None
        return self._fernet.encrypt(orjson.dumps(secrets)).decode()

    def decrypt(self, token: str | None, *, connection_name: str) -> dict[str, str]:
        if not token:
            return {}
        try:
            return dict(orjson.loads(self._fernet.decrypt(token.encode())))
        except InvalidToken as exc:
            raise SecretUnreadableError(
                f"The stored secret of connection {connection_name!r} cannot be "
                "decrypted with this server's keys; give every server the same "
                "POINTSMAN_SECRET_KEY"
            ) from exc


def load_keys(configured: Sequence[str], data_dir: Path) -> list[str]:
    """The configured keys, else the key file in the data directory (created
    with mode 0600 on first use)."""
    if configured:
        return list(configured)
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(Fernet.generate_key().decode())
        log.info("created secret key file %s", path)
    return [path.read_text().strip()]

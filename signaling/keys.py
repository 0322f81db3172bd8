"""The server's two secrets: the admin key and the token-signing secret.

Each comes from the settings or, failing that, from a file in the data dir that is
generated on first start with mode 0600 (readable by the server's user only).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from signaling.settings import Settings

ADMIN_KEY_FILE = "admin.key"
TOKEN_SECRET_FILE = "token.key"


def _read_or_create(path: Path, make: str) -> tuple[str, bool]:
    """Return the file's content, creating it with `make` if absent; and whether it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once cannot both write a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text(encoding="utf-8").strip()
        if not value:
            raise RuntimeError(f"{path} is empty; delete it to generate a new one") from None
        return value, False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(make + "\n")
    return make, True


def admin_key(settings: Settings) -> tuple[str, bool]:
    """The admin key, and True if it was generated just now (print it once)."""
    if settings.admin_key is not None:
        return settings.admin_key.get_secret_value(), False
    return _read_or_create(settings.data_dir / ADMIN_KEY_FILE, secrets.token_urlsafe(24))


def token_secret(settings: Settings) -> str:
    if settings.token_secret is not None:
        return settings.token_secret.get_secret_value()
    return _read_or_create(settings.data_dir / TOKEN_SECRET_FILE, secrets.token_hex(32))[0]

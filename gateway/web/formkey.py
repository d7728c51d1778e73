"""The key that signs the forms' CSRF tokens (gateway.web.formtoken): made once, kept in the web's state directory.

`csrf.key`, 32 random bytes, mode 0600, beside the web's other secrets (the TLS key, the accounts' keys). Like
every `*.key` file it stays on the box: a backup leaves it out and a restore keeps the box's own. Lost or
damaged, a new one is made: the only cost is that forms open at that moment are refused as expired and must
be sent again.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from gateway.storage.files import create_whole, write_atomic

log = logging.getLogger(__name__)

KEY_FILE = "csrf.key"
KEY_BYTES = 32


def form_key(state_dir: Path) -> bytes:
    """The key in `state_dir`, made now if there is none (another process making it at once is fine: the first
    one linked counts). OSError when the directory or the file cannot be used (its owner, its mode)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / KEY_FILE
    if not path.exists():
        create_whole(path, secrets.token_bytes(KEY_BYTES))
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        log.warning(
            "web: %s holds %d bytes, not a %d-byte key; made a new one (forms open now will be refused as expired)",
            path,
            len(key),
            KEY_BYTES,
        )
        key = secrets.token_bytes(KEY_BYTES)
        write_atomic(path, key, 0o600, durable=True)
    return key

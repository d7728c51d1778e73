"""The tamper-evident audit log (an HMAC chain in sqlite) and its CLI."""

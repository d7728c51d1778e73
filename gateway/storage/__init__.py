"""What every store of record shares: schema versions with forward migrations (schema.py)."""

"""The durable SQLite outbox between adapters and uplinks."""

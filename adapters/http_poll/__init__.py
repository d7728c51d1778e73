"""The `http_poll` adapter: polls JSON documents over HTTP(S) and maps them to Readings."""

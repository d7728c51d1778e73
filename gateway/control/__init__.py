"""The gateway's control socket: a local JSON-lines protocol for the web UI and local tools (see protocol.py)."""

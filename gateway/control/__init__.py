"""The gateway's local control socket: a small JSON protocol for the web UI and local tools."""

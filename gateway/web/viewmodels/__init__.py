"""Pure view models of the web UI's data pages: documents from the control socket in, rows and texts out (no I/O)."""

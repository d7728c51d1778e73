"""The local admin web UI: its own process (`edgegw web`), talking to the gateway through the control socket."""

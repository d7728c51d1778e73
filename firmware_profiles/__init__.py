"""The firmware profiles shipped with edgegw (package data: gateway.profiles.loader finds them via importlib.resources)."""

"""Accounts of the admin web UI: password hashing and policy, the account store, the login throttle, the CLI."""

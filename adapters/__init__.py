"""Southbound device adapters, one package per device family."""

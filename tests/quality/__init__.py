"""Tests of gateway.quality and gateway.river."""

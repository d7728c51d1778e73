"""Tests of gateway.processing.quality and gateway.processing.river."""

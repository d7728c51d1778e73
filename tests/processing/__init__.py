"""Tests of gateway.processing: the stage, each processor, and water-level feeds through it end to end."""

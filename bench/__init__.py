"""Benchmarks: scripts that print figures (see README "Performance"); some share a harness."""

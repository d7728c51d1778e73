"""Simulated devices for the demo, the tests and the benchmarks."""

"""Verification benchmarks: insightface ``.bin`` pairs and the 10-fold protocol."""

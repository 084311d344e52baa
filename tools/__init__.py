"""Tooling: benchmarks, the evaluation, the replay command line, calibration, downloads and indexing.

The top layer: it may import any package (it assembles the product the way an operator or a
reviewer runs it), and no runtime module imports it (import-linter checks both, see pyproject.toml).
"""

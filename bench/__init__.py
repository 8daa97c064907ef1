"""`make bench`: benchmarks of the real processes (gateway, consumers, SKAN verify/decode).

Run with `python -m bench` from the repository root; see docs/benchmarks.md for what each number means.
"""

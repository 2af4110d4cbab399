"""Benchmarks of the runtime (`edgevla bench bus|executor|recorder`); each measures its baseline in the same run and returns a `BenchResult` (actors/console/bench_report.py)."""

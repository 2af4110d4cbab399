"""Benchmarks of the runtime (`edgevla bench bus|executor|recorder`) and the harness every benchmark shares: table, baseline in the same run, JSON with rows and summary."""

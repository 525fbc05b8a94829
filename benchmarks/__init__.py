"""Benchmarks of the OutSystems session workload on the shipped topology, on loopback.

    make bench          # full run (~10-15 min): writes benchmarks/results/latest.json and BENCHMARKS.md
    make bench-quick    # < 1 min: benchmarks/results/quick.json, BENCHMARKS.md untouched

See BENCHMARKS.md for what is measured and how.
"""

"""
p2pnet benchmarks: one module per measurement, each runnable as
C{python -m benchmarks.NAME}; each prints a table and writes
C{benchmarks/results/NAME.json}.  See benchmarks/README.md and
docs/performance.md.
"""

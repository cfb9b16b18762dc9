"""zominimize's benchmark suite: ``python -m benchmarks --quick`` (or ``--full``)."""

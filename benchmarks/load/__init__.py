"""Load harness for the participant study: `python -m benchmarks.load --help`, docs/load.md."""

"""`python -m benchmarks.load`: see benchmarks/load/run.py."""

from benchmarks.load.run import main

raise SystemExit(main())

"""Face datasets, recognizers, FVR methods and Metric 1 (Django models only; no torch)."""

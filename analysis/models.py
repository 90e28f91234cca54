"""Analysis runs (models arrive with the analysis issue)."""

"""The one error the analysis services raise."""


class AnalysisError(Exception):
    """The study cannot be analysed or simulated as asked; the message says why."""

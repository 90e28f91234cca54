"""Analysis runs: one row per report written for a study, with the plan it was run under."""

from pathlib import Path

from django.conf import settings
from django.db import models

REPORT_FILES: tuple[str, ...] = (
    "report.html",
    "report.md",
    "summary.json",
    "config.json",
    "responses_long.csv",
)


class AnalysisRun(models.Model):
    """A report built by `analysis.services.study_analyze` and where its files are."""

    study = models.ForeignKey(
        "survey.Study", on_delete=models.CASCADE, related_name="analysis_runs"
    )
    config = models.JSONField(help_text="The AnalysisConfig used (as in config.json).")
    plan = models.JSONField(
        default=dict, blank=True, help_text="The study's analysis plan when the report was run."
    )
    plan_sha256 = models.CharField(
        "plan hash", max_length=64, blank=True, help_text="Hash of the plan used for this run."
    )
    frozen_plan_sha256 = models.CharField(
        "frozen plan hash",
        max_length=64,
        blank=True,
        help_text="Hash frozen when the study opened; empty if it never opened.",
    )
    plan_deviates = models.BooleanField(
        "deviates from plan",
        default=False,
        help_text="The plan used differs from the one frozen when the study opened.",
    )
    out_dir = models.CharField(
        "report folder", max_length=500, help_text="Folder with report.html, summary.json, …"
    )
    summary = models.JSONField(default=dict, blank=True, help_text="Headline numbers.")
    n_participants = models.PositiveIntegerField(
        default=0, help_text="Participants analysed after exclusions."
    )
    n_responses = models.PositiveIntegerField(
        default=0, help_text="Responses in the export (before exclusions)."
    )
    duration_s = models.FloatField("seconds", default=0.0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        get_latest_by = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.study.slug} at {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def folder(self) -> Path:
        """The report folder as a path."""
        return Path(self.out_dir)

    def report_file(self, name: str) -> Path | None:
        """Path of one of the report's files if it is a known name and still exists."""
        if name not in REPORT_FILES:
            return None
        path = self.folder / name
        return path if path.is_file() else None

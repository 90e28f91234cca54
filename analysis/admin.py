"""Admin for analysis runs, with the staff-only study report pages mounted under it."""

import json

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from analysis import views
from analysis.models import REPORT_FILES, AnalysisRun


@admin.register(AnalysisRun)
class AnalysisRunAdmin(admin.ModelAdmin):
    """Runs are records of what was reported: listed and viewed, never edited."""

    list_display = [
        "study",
        "created_at",
        "plan_hash",
        "plan_deviates",
        "n_participants",
        "n_responses",
        "seconds",
        "created_by",
        "report_link",
    ]
    list_filter = ["plan_deviates", "study"]
    list_select_related = ["study", "created_by"]
    search_fields = ["study__slug", "study__title", "plan_sha256"]
    date_hierarchy = "created_at"
    change_list_template = "analysis/admin/analysisrun_change_list.html"
    fields = [
        "study",
        "created_at",
        "created_by",
        "report_link",
        "files",
        "plan_sha256",
        "frozen_plan_sha256",
        "plan_deviates",
        "n_participants",
        "n_responses",
        "duration_s",
        "out_dir",
        "plan_pretty",
        "config_pretty",
        "summary_pretty",
    ]
    readonly_fields = fields

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "reports/",
                wrap(views.StudyReportIndexView.as_view(model_admin=self)),
                name="analysis_study_reports",
            ),
            path(
                "reports/<slug:slug>/",
                wrap(views.StudyReportView.as_view(model_admin=self)),
                name="analysis_study_report",
            ),
            path(
                "<int:pk>/files/<str:name>",
                wrap(views.RunFileView.as_view(model_admin=self)),
                name="analysis_run_file",
            ),
            *super().get_urls(),
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("study", "created_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs come from study_analyze (command or the report page's button)

    def has_change_permission(self, request: HttpRequest, obj: AnalysisRun | None = None) -> bool:
        return False

    @admin.display(description="plan hash", ordering="plan_sha256")
    def plan_hash(self, obj: AnalysisRun) -> str:
        return obj.plan_sha256[:12] or "—"

    @admin.display(description="seconds", ordering="duration_s")
    def seconds(self, obj: AnalysisRun) -> str:
        return f"{obj.duration_s:.1f}"

    @admin.display(description="report")
    def report_link(self, obj: AnalysisRun) -> str:
        return format_html(
            '<a href="{}">study report page</a> · <a href="{}">this run (HTML)</a>',
            reverse("admin:analysis_study_report", args=[obj.study.slug]),
            reverse("admin:analysis_run_file", args=[obj.pk, "report.html"]),
        )

    @admin.display(description="files")
    def files(self, obj: AnalysisRun) -> str:
        present = [name for name in REPORT_FILES if obj.report_file(name)]
        if not present:
            return "The report folder is gone."
        return format_html_join(
            " · ",
            '<a href="{}">{}</a>',
            ((reverse("admin:analysis_run_file", args=[obj.pk, name]), name) for name in present),
        )

    @admin.display(description="analysis plan")
    def plan_pretty(self, obj: AnalysisRun) -> str:
        return _pretty(obj.plan)

    @admin.display(description="configuration")
    def config_pretty(self, obj: AnalysisRun) -> str:
        return _pretty(obj.config)

    @admin.display(description="headline numbers")
    def summary_pretty(self, obj: AnalysisRun) -> str:
        return _pretty(obj.summary)


def _pretty(value: object) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)

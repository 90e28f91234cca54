"""Staff-only report pages, mounted under the AnalysisRun admin (see AnalysisRunAdmin.get_urls)."""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.generic import TemplateView, View

from analysis.models import REPORT_FILES, AnalysisRun
from survey.dataprotection import actor_of, audit_record
from survey.models import AuditEvent, Study

# The report is our own HTML with inline SVG and CSS: nothing else may load or run in it.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".json": "application/json",
    ".csv": "text/csv; charset=utf-8",
}


EXPORT_PERMISSION = "survey.export_responses"


class AdminReportMixin:
    """Needs the admin's view permission on AnalysisRun; adds the admin's page context."""

    model_admin: admin.ModelAdmin | None = None
    # Permissions needed on top of the view permission.
    permission_required: tuple[str, ...] = ()

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not self.model_admin.has_view_permission(request):
            raise PermissionDenied
        if not request.user.has_perms(self.permission_required):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def admin_context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        return {
            **self.model_admin.admin_site.each_context(request),
            "opts": AnalysisRun._meta,
            "title": title,
        }


class StudyReportIndexView(AdminReportMixin, TemplateView):
    """Every study with its number of responses and its latest report."""

    template_name = "analysis/study_reports.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        studies = Study.objects.annotate(
            n_runs=Count("analysis_runs", distinct=True),
            last_run=Max("analysis_runs__created_at"),
            n_completed=Count(
                "participants", filter=Q(participants__status="completed"), distinct=True
            ),
        ).order_by("-created_at")
        return {**self.admin_context(self.request, "Study reports"), "studies": studies}


class StudyReportView(AdminReportMixin, TemplateView):
    """A study's latest report (inline) and a button that runs the analysis now.

    The page itself shows only what the run records hold (counts, hashes, dates); the report's
    files, the inline report.html included, are exports and need the export permission.
    """

    template_name = "analysis/study_report.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        study = get_object_or_404(Study, slug=self.kwargs["slug"])
        runs = list(study.analysis_runs.select_related("created_by")[:10])
        latest = runs[0] if runs else None
        return {
            **self.admin_context(self.request, f"Analysis report: {study.title}"),
            "study": study,
            "latest": latest,
            "latest_html": latest.report_file("report.html") if latest else None,
            "earlier": runs[1:],
            "can_run": self.can_run(),
            "can_export": self.request.user.has_perm(EXPORT_PERMISSION),
        }

    def can_run(self) -> bool:
        # Running writes the report on the server and shows nobody its files (RunFileView
        # needs the export permission), so the add permission alone is enough.
        return self.request.user.has_perm("analysis.add_analysisrun")

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        study = get_object_or_404(Study, slug=slug)
        if not self.can_run():
            raise PermissionDenied
        # Imported here: the admin loads at start-up in every process, and the statistics
        # stack (numpy, scipy, statsmodels, matplotlib) is the optional "analysis" extra.
        from analysis.services import AnalysisError, study_analyze

        try:
            run = study_analyze(study=study, user=request.user)
        except AnalysisError as error:
            messages.error(request, str(error))
        else:
            note = " It DEVIATES from the frozen analysis plan." if run.plan_deviates else ""
            messages.success(
                request,
                f"Analysis done in {run.duration_s:.1f} s: {run.n_participants} participants "
                f"analysed.{note}",
            )
        return HttpResponseRedirect(reverse("admin:analysis_study_report", args=[slug]))


@method_decorator(xframe_options_sameorigin, name="dispatch")
class RunFileView(AdminReportMixin, View):
    """One file of a run's report folder (report.html is shown inline, framed by the page)."""

    permission_required = (EXPORT_PERMISSION,)

    def get(self, request: HttpRequest, pk: int, name: str) -> FileResponse:
        run = get_object_or_404(AnalysisRun, pk=pk)
        if name not in REPORT_FILES:
            raise Http404("Not a report file.")
        path = run.report_file(name)
        if path is None:
            raise Http404("This report file no longer exists.")
        # Every file leaves with participant-level or derived data (responses_long.csv holds
        # each answer): the download is recorded like any other export.
        audit_record(
            actor=actor_of(request.user),
            action=AuditEvent.Action.EXPORT,
            study=run.study,
            detail={"via": "admin report file", "format": name, "analysis_run": run.pk},
        )
        response = FileResponse(
            path.open("rb"),
            as_attachment=name != "report.html",
            filename=f"{run.study.slug}-{run.pk}-{name}",
            content_type=CONTENT_TYPES[path.suffix],
        )
        response["Content-Security-Policy"] = REPORT_CSP
        return response

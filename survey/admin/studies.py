"""The study admin: live counts, links for Prolific, opening and closing, the dashboard and the
responses export.
"""

from functools import partial
from itertools import chain

from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from survey import dashboard
from survey.dataprotection import actor_of, exports_audit
from survey.exports import csv_lines, responses_long
from survey.models import FvrMethod, MatchSet, Participant, Response, Study
from survey.services import FlowError, study_set_status

Status = Participant.Status
PROLIFIC_PARAMETERS = ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"]


def _count_of(queryset: QuerySet, group_by: str) -> Coalesce:
    """A correlated COUNT(*) subquery (avoids multiplying joins in annotations)."""
    counted = queryset.order_by().values(group_by).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _changelist_link(model: type, text: str, **filters: object) -> str:
    url = reverse(f"admin:survey_{model._meta.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(filters), text)


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "slug",
        "status",
        "is_demo",
        "match_set_count",
        "active_count",
        "completed_count",
        "failed_count",
        "no_consent_count",
        "returned_count",
        "response_count",
        "progress",
        "links",
    ]
    list_filter = ["status", "is_demo"]
    search_fields = ["slug", "title", "prolific_study_id"]
    prepopulated_fields = {"slug": ["title"]}
    readonly_fields = [
        "status",
        "created_at",
        "opened_at",
        "closed_at",
        "live_counts",
        "links",
        "prolific_url",
    ]
    actions = ["open_studies", "close_studies", "download_responses_csv"]
    fieldsets = [
        (None, {"fields": ["title", "slug", "description", "status", "is_demo", "links"]}),
        ("Study URL for Prolific", {"fields": ["prolific_url"]}),
        ("Live counts", {"fields": ["live_counts"]}),
        (
            "Design",
            {
                "fields": [
                    "k",
                    "questions_per_method",
                    "attention_checks",
                    "attention_failures_allowed",
                    "speeder_seconds",
                ]
            },
        ),
        (
            "Prolific",
            {
                "fields": [
                    "prolific_study_id",
                    "completion_code",
                    "failed_attention_code",
                    "no_consent_code",
                    "estimated_minutes",
                    "maximum_minutes",
                    "max_participants",
                ]
            },
        ),
        ("History", {"fields": ["created_at", "opened_at", "closed_at"]}),
    ]

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/dashboard/",
                wrap(partial(dashboard.dashboard_view, model_admin=self)),
                name="survey_study_dashboard",
            ),
            path(
                "<path:object_id>/dashboard.json",
                wrap(partial(dashboard.dashboard_data_view, model_admin=self)),
                name="survey_study_dashboard_data",
            ),
            *super().get_urls(),
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        by_status = {
            f"n_{status}": Count("participants", filter=Q(participants__status=status))
            for status in Status.values
        }
        return (
            super()
            .get_queryset(request)
            .annotate(
                **by_status,
                n_match_sets=_count_of(MatchSet.objects.filter(study=OuterRef("pk")), "study"),
                n_responses=_count_of(
                    Response.objects.filter(participant__study=OuterRef("pk")),
                    "participant__study",
                ),
            )
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Study | None = None) -> list[str]:
        # K is fixed once match sets exist: each has exactly K candidates.
        if obj is not None and obj.match_sets.exists():
            return [*self.readonly_fields, "k"]
        return self.readonly_fields

    @admin.display(description="match sets", ordering="n_match_sets")
    def match_set_count(self, obj: Study) -> int:
        return obj.n_match_sets

    @admin.display(description="active", ordering=f"n_{Status.ACTIVE}")
    def active_count(self, obj: Study) -> int:
        return getattr(obj, f"n_{Status.ACTIVE}")

    @admin.display(description="completed", ordering=f"n_{Status.COMPLETED}")
    def completed_count(self, obj: Study) -> int:
        return getattr(obj, f"n_{Status.COMPLETED}")

    @admin.display(description="failed checks", ordering=f"n_{Status.FAILED_ATTENTION}")
    def failed_count(self, obj: Study) -> int:
        return getattr(obj, f"n_{Status.FAILED_ATTENTION}")

    @admin.display(description="no consent", ordering=f"n_{Status.NO_CONSENT}")
    def no_consent_count(self, obj: Study) -> int:
        return getattr(obj, f"n_{Status.NO_CONSENT}")

    @admin.display(description="returned", ordering=f"n_{Status.RETURNED}")
    def returned_count(self, obj: Study) -> int:
        return getattr(obj, f"n_{Status.RETURNED}")

    @admin.display(description="responses", ordering="n_responses")
    def response_count(self, obj: Study) -> int:
        return obj.n_responses

    @admin.display(description="progress")
    def progress(self, obj: Study) -> str:
        completed = getattr(obj, f"n_{Status.COMPLETED}")
        if not obj.max_participants:
            return f"{completed} completed (no limit)"
        percent = round(100 * completed / obj.max_participants)
        return f"{completed} / {obj.max_participants} ({percent}%)"

    @admin.display(description="links")
    def links(self, obj: Study) -> str:
        if obj.pk is None:
            return "—"
        csv_url = reverse("api-responses-csv", kwargs={"slug": obj.slug})
        return format_html(
            (
                '{} · {} · <a href="{}">Download responses (CSV)</a>'
                ' · <a href="{}">Analysis report</a> · <a href="{}">Live dashboard</a>'
            ),
            _changelist_link(MatchSet, "Match sets", study__id__exact=obj.pk),
            _changelist_link(Participant, "Participants", study__id__exact=obj.pk),
            csv_url,
            reverse("admin:analysis_study_report", args=[obj.slug]),
            reverse("admin:survey_study_dashboard", args=[obj.pk]),
        )

    @admin.display(description="study URL")
    def prolific_url(self, obj: Study) -> str:
        if obj.pk is None:
            return "—"
        query = "&".join(f"{name}={{{{%{name}%}}}}" for name in PROLIFIC_PARAMETERS)
        return format_html(
            "<code>https://YOUR-HOST{}?{}</code><br>Paste into Prolific with your site's address.",
            obj.get_absolute_url(),
            query,
        )

    @admin.display(description="participants by status (live)")
    def live_counts(self, obj: Study) -> str:
        if obj.pk is None:
            return "—"
        counts = dict(
            obj.participants.order_by()
            .values_list("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        methods = dict(
            obj.match_sets.order_by()
            .values_list("method")
            .annotate(n=Count("pk"))
            .values_list("method", "n")
        )
        rows = [(label, counts.get(status, 0)) for status, label in Status.choices]
        rows.append(("All participants", sum(counts.values())))
        rows.append(("Responses", Response.objects.filter(participant__study=obj).count()))
        rows += [
            (f"Match sets: {label}", methods[method])
            for method, label in FvrMethod.choices
            if method in methods
        ]
        return format_html(
            '<table class="live-counts"><tbody>{}</tbody></table>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
        )

    def _set_status(self, request: HttpRequest, queryset: QuerySet, status: str) -> None:
        changed = 0
        for study in queryset:
            try:
                study_set_status(study=study, status=status)
            except FlowError as error:
                self.message_user(request, f"{study.slug}: {error.message}", messages.ERROR)
            else:
                changed += 1
        if changed:
            label = Study.Status(status).label.lower()
            self.message_user(request, f"{changed} study(ies) now {label}.", messages.SUCCESS)

    @admin.action(description="Open selected studies", permissions=["change"])
    def open_studies(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_status(request, queryset, Study.Status.OPEN)

    @admin.action(description="Close selected studies", permissions=["change"])
    def close_studies(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_status(request, queryset, Study.Status.CLOSED)

    def has_export_responses_permission(self, request: HttpRequest) -> bool:
        """Exports take participant data away: a permission of its own (Study.Meta)."""
        return request.user.has_perm("survey.export_responses")

    @admin.action(
        description="Download responses of selected studies (CSV)",
        permissions=["export_responses"],
    )
    def download_responses_csv(
        self, request: HttpRequest, queryset: QuerySet
    ) -> StreamingHttpResponse:
        studies = list(queryset.order_by("slug"))
        exports_audit(actor=actor_of(request.user), studies=studies, via="admin", fmt="csv")
        rows = chain.from_iterable(responses_long(study) for study in studies)
        response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
        name = studies[0].slug if len(studies) == 1 else "studies"
        response["Content-Disposition"] = f'attachment; filename="{name}-responses.csv"'
        return response

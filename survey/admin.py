"""Django admin for researchers: studies and match sets, and participant data read-only."""

import json
from collections.abc import Callable
from functools import partial
from itertools import chain

from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from survey import dashboard, prolific
from survey.adminlogin import ThrottledAdminLoginForm
from survey.dataprotection import actor_of, exports_audit
from survey.exports import csv_lines, responses_long
from survey.models import (
    Assignment,
    AuditEvent,
    Candidate,
    FvrMethod,
    MatchSet,
    PageVisit,
    Participant,
    RefusedRequest,
    Response,
    Study,
    pseudonymise,
)
from survey.services import (
    REENTRY_SAME_BROWSER,
    REENTRY_SAME_NETWORK,
    FlowError,
    study_set_status,
)

admin.site.site_header = "fvr-study"
admin.site.site_title = "fvr-study admin"
admin.site.index_title = "Studies, match sets and participants"
# Failed passwords are limited per account and per network (survey/adminlogin.py).
admin.site.login_form = ThrottledAdminLoginForm

Status = Participant.Status
PROLIFIC_PARAMETERS = ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"]


def _count_of(queryset: QuerySet, group_by: str) -> Coalesce:
    """A correlated COUNT(*) subquery (avoids multiplying joins in annotations)."""
    counted = queryset.order_by().values(group_by).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _changelist_link(model: type, text: str, **filters: object) -> str:
    url = reverse(f"admin:survey_{model._meta.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(filters), text)


def _thumbnail(image: object, alt: str, size: int = 72) -> str:
    if not image:
        return "—"
    return format_html(
        '<img src="{}" alt="{}" width="{}" height="{}" loading="lazy" '
        'style="object-fit: cover; border-radius: 4px">',
        image.url,
        alt,
        size,
        size,
    )


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


class CandidateInline(admin.TabularInline):
    model = Candidate
    fields = ["rank", "preview", "identity", "is_true", "score"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    @admin.display(description="image")
    def preview(self, obj: Candidate) -> str:
        return _thumbnail(obj.image, f"candidate {obj.rank}", size=112)

    def has_add_permission(self, request: HttpRequest, obj: MatchSet | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: MatchSet | None = None) -> bool:
        return False


@admin.register(MatchSet)
class MatchSetAdmin(admin.ModelAdmin):
    """View-only: match sets come from `import_matchsets` (which renders the images)."""

    list_display = [
        "key",
        "study",
        "method",
        "target_identity",
        "query_thumbnail",
        "true_ranks",
        "answer_count",
        "created_at",
    ]
    list_filter = ["study", "method"]
    list_select_related = ["study"]
    search_fields = ["key", "target_identity"]
    fields = [
        "study",
        "key",
        "method",
        "target_identity",
        "query_preview",
        "provenance_pretty",
        "created_at",
    ]
    readonly_fields = fields
    inlines = [CandidateInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        answered = Q(assignments__is_attention_check=False)
        return (
            super()
            .get_queryset(request)
            .annotate(n_answers=Count("assignments", filter=answered))
            .prefetch_related("candidates")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: MatchSet | None = None) -> bool:
        return False

    @admin.display(description="query")
    def query_thumbnail(self, obj: MatchSet) -> str:
        return _thumbnail(obj.query_image, f"query of {obj.key}", size=56)

    @admin.display(description="query image")
    def query_preview(self, obj: MatchSet) -> str:
        return _thumbnail(obj.query_image, f"query of {obj.key}", size=224)

    @admin.display(description="true ranks")
    def true_ranks(self, obj: MatchSet) -> str:
        ranks = [str(c.rank) for c in obj.candidates.all() if c.is_true]
        return ", ".join(ranks) or "none (target absent)"

    @admin.display(description="answers", ordering="n_answers")
    def answer_count(self, obj: MatchSet) -> int:
        return obj.n_answers

    @admin.display(description="provenance")
    def provenance_pretty(self, obj: MatchSet) -> str:
        text = json.dumps(obj.provenance, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Participant data is a record of what happened: the admin shows it and never edits it."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ResponseInline(admin.TabularInline):
    model = Response
    fields = [
        "assignment",
        "selected_ranks",
        "none_selected",
        "confidence",
        "any_correct",
        "attention_passed",
        "is_fast",
        "served_at",
        "answered_at",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("assignment__participant")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class IntegrityFlagFilter(admin.SimpleListFilter):
    """Participants by integrity flag (survey.services: re-entry under a new PID)."""

    title = "integrity flags"
    parameter_name = "flag"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [
            ("any", "Flagged"),
            ("none", "Not flagged"),
            (REENTRY_SAME_BROWSER, "Re-entry from the same browser"),
            (REENTRY_SAME_NETWORK, "Re-entry from the same network"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == "any":
            return queryset.exclude(integrity_flags=[])
        if value == "none":
            return queryset.filter(integrity_flags=[])
        if value in (REENTRY_SAME_BROWSER, REENTRY_SAME_NETWORK):
            # JSON `contains` is not available on SQLite; no reason is part of another.
            return queryset.filter(integrity_flags__icontains=value)
        return queryset


@admin.register(Participant)
class ParticipantAdmin(ReadOnlyAdmin):
    # The raw Prolific ID is only on the detail page (for Prolific support), never in lists.
    list_display = [
        "pseudonym",
        "study",
        "status",
        "step",
        "current_position",
        "attention_failures",
        "gender",
        "age_group",
        "entered_at",
        "finished_at",
        "flags",
    ]
    list_filter = ["study", "status", IntegrityFlagFilter, "step", "gender", "age_group"]
    list_select_related = ["study"]
    search_fields = ["pseudonym"]
    search_help_text = "Pseudonym, or a Prolific ID (matched through its pseudonym)."
    inlines = [ResponseInline]
    actions = [
        "prolific_verify",
        "prolific_approve",
        "prolific_reject_failed_check",
        "prolific_request_return",
    ]

    def has_operate_prolific_permission(self, request: HttpRequest) -> bool:
        """Approving, rejecting, paying and returning act on people: a permission of its own."""
        return request.user.has_perm("survey.operate_prolific")

    def _prolific(self, request: HttpRequest, operation: Callable[[], str]) -> None:
        """Run a Prolific operation and report its outcome (or Prolific's error) to the user."""
        try:
            self.message_user(request, operation(), messages.SUCCESS)
        except prolific.ProlificError as error:
            self.message_user(request, error.message, messages.ERROR)

    @admin.action(
        description="Prolific: verify selected participants' SESSION_IDs",
        permissions=["operate_prolific"],
    )
    def prolific_verify(self, request: HttpRequest, queryset: QuerySet) -> None:
        def run() -> str:
            results = []
            for study in Study.objects.filter(participants__in=queryset).distinct():
                results += prolific.submissions_verify(
                    study=study,
                    participants=queryset.filter(study=study).select_related("study"),
                    actor=actor_of(request.user),
                )
            bad = [
                f"{r.participant.pseudonym} ({'; '.join(r.problems)})" for r in results if not r.ok
            ]
            text = f"Verified {len(results) - len(bad)} participant(s) with Prolific."
            return text + (f" Not verified: {', '.join(bad)}." if bad else "")

        self._prolific(request, run)

    @admin.action(
        description="Prolific: approve selected (completed) submissions",
        permissions=["operate_prolific"],
    )
    def prolific_approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        def run() -> str:
            # Per study: how many were approved, and who was left out (unverified, flagged).
            return " ".join(
                prolific.submissions_approve(
                    study=study,
                    participants=queryset.filter(study=study),
                    actor=actor_of(request.user),
                ).summary()
                for study in Study.objects.filter(participants__in=queryset).distinct()
            )

        self._prolific(request, run)

    @admin.action(
        description="Prolific: reject selected as FAILED_CHECK (failed attention)",
        permissions=["operate_prolific"],
    )
    def prolific_reject_failed_check(self, request: HttpRequest, queryset: QuerySet) -> None:
        def run() -> str:
            chosen = list(queryset)
            others = [p.pseudonym for p in chosen if p.status != Status.FAILED_ATTENTION]
            if others:
                raise prolific.ProlificError(
                    "Only participants who failed the attention checks are rejected as "
                    f"FAILED_CHECK; not failed: {', '.join(others)}."
                )
            for p in chosen:
                prolific.submission_reject(
                    participant=p,
                    category="FAILED_CHECK",
                    message=prolific.FAILED_CHECK_MESSAGE,
                    actor=actor_of(request.user),
                )
            return f"Rejected {len(chosen)} submission(s) as FAILED_CHECK."

        self._prolific(request, run)

    @admin.action(
        description="Prolific: ask selected (declined consent) to return",
        permissions=["operate_prolific"],
    )
    def prolific_request_return(self, request: HttpRequest, queryset: QuerySet) -> None:
        def run() -> str:
            chosen = list(queryset)
            others = [p.pseudonym for p in chosen if p.status != Status.NO_CONSENT]
            if others:
                raise prolific.ProlificError(
                    "Return requests are for participants who declined consent; "
                    f"not declined: {', '.join(others)}."
                )
            for p in chosen:
                prolific.submission_request_return(participant=p, actor=actor_of(request.user))
            return f"Asked {len(chosen)} participant(s) to return their submission."

        self._prolific(request, run)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            results |= queryset.filter(pseudonym=pseudonymise(term))
        return results, may_have_duplicates

    @admin.display(description="integrity flags")
    def flags(self, obj: Participant) -> str:
        return ", ".join(obj.integrity_flags) or "—"


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = [
        "participant",
        "position",
        "match_set",
        "is_attention_check",
        "attention_rank",
        "attention_confidence",
        "served_at",
        "answered",
    ]
    list_filter = ["participant__study", "is_attention_check", "match_set__method"]
    list_select_related = ["participant", "match_set", "response"]
    search_fields = ["participant__pseudonym", "match_set__key"]

    @admin.display(description="answered", boolean=True)
    def answered(self, obj: Assignment) -> bool:
        return hasattr(obj, "response")


@admin.register(Response)
class ResponseAdmin(ReadOnlyAdmin):
    list_display = [
        "participant",
        "position",
        "method",
        "match_set",
        "selected_ranks",
        "none_selected",
        "confidence",
        "any_correct",
        "attention_passed",
        "is_fast",
        "duration",
        "answered_at",
    ]
    list_filter = [
        "participant__study",
        "assignment__match_set__method",
        "any_correct",
        "attention_passed",
        "is_fast",
        "participant__status",
    ]
    list_select_related = ["participant", "assignment__match_set"]
    search_fields = ["participant__pseudonym", "assignment__match_set__key"]

    @admin.display(description="position", ordering="assignment__position")
    def position(self, obj: Response) -> int:
        return obj.assignment.position

    @admin.display(description="method", ordering="assignment__match_set__method")
    def method(self, obj: Response) -> str:
        return obj.assignment.match_set.get_method_display()

    @admin.display(description="match set", ordering="assignment__match_set__key")
    def match_set(self, obj: Response) -> str:
        return obj.assignment.match_set.key

    @admin.display(description="seconds")
    def duration(self, obj: Response) -> str:
        return f"{obj.duration_seconds:.1f}"


@admin.register(PageVisit)
class PageVisitAdmin(ReadOnlyAdmin):
    list_display = ["participant", "page", "served_at", "submitted_at"]
    list_filter = ["participant__study", "page"]
    list_select_related = ["participant"]
    search_fields = ["participant__pseudonym"]


@admin.register(RefusedRequest)
class RefusedRequestAdmin(ReadOnlyAdmin):
    list_display = ["at", "study", "participant", "reason", "detail"]
    list_filter = ["study", "reason"]
    list_select_related = ["study", "participant"]
    search_fields = ["participant__pseudonym", "reason", "detail"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit log: exports, analyses, purges, deletions and Prolific operations."""

    list_display = ["at", "actor", "action", "study", "subject"]
    list_filter = ["action", "study"]
    list_select_related = ["study"]
    search_fields = ["actor", "subject"]
    search_help_text = "Actor or subject (a participant's pseudonym, never a Prolific ID)."
    date_hierarchy = "at"
    fields = ["at", "actor", "action", "study", "subject", "detail_pretty"]
    readonly_fields = fields

    @admin.display(description="detail")
    def detail_pretty(self, obj: AuditEvent) -> str:
        text = json.dumps(obj.detail, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)

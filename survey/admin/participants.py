"""Participant data, read-only: participants (with the Prolific operations), their questions,
the assignment slots they claimed them from, answers, page visits and refused requests, and the
audit log.
"""

import json
from collections.abc import Callable
from datetime import datetime

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from survey import prolific
from survey.dataprotection import actor_of
from survey.models import (
    Assignment,
    AssignmentSlot,
    AuditEvent,
    PageVisit,
    Participant,
    RefusedRequest,
    Response,
    Study,
    pseudonymise,
)
from survey.services import REENTRY_SAME_BROWSER, REENTRY_SAME_NETWORK

Status = Participant.Status


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
        "shown_at",
        "answered",
    ]
    list_filter = ["participant__study", "is_attention_check", "match_set__method"]
    list_select_related = ["participant", "match_set", "response"]
    search_fields = ["participant__pseudonym", "match_set__key"]

    @admin.display(description="answered", boolean=True)
    def answered(self, obj: Assignment) -> bool:
        return hasattr(obj, "response")

    @admin.display(description="shown at")
    def shown_at(self, obj: Assignment) -> datetime | None:
        """The answer's served_at; the participant's while it is their current question."""
        if hasattr(obj, "response"):
            return obj.response.served_at
        p = obj.participant
        if p.step == Participant.Step.QUESTIONS and p.current_position == obj.position:
            return p.current_served_at
        return None


@admin.register(AssignmentSlot)
class AssignmentSlotAdmin(ReadOnlyAdmin):
    """The question sets decided ahead (survey.models.slots), in the order they are claimed,
    who holds each, and which are settled (their holder completed): what the balance of match
    sets across participants was built from."""

    list_display = [
        "study",
        "seq",
        "match_set_count",
        "participant",
        "claimed_at",
        "settled",
        "design",
    ]
    list_filter = ["study", ("participant", admin.EmptyFieldListFilter), "settled"]
    list_select_related = ["study", "participant"]
    search_fields = ["participant__pseudonym"]

    @admin.display(description="match sets")
    def match_set_count(self, obj: AssignmentSlot) -> int:
        return len(obj.match_sets)


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

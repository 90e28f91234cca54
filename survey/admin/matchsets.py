"""The match-set admin: each question's query and candidates, read-only once imported."""

import json

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from survey.models import Candidate, MatchSet


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

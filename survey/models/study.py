"""Studies and their match sets: the FVR methods, Study, MatchSet and its Candidates."""

import hashlib
import json
import uuid
from collections.abc import Iterable
from datetime import timedelta
from pathlib import PurePosixPath

from django.db import models
from django.db.models import Q
from django.urls import reverse


class FvrMethod(models.TextChoices):
    """The four feature-vector reconstruction methods compared in the study."""

    EIGENFACES = "eigenfaces", "Eigenfaces (black-box)"
    NBNET = "nbnet", "NBNet"
    NAIVE = "naive", "Naive"
    VEC2FACE = "vec2face", "Vec2Face"


def image_upload_to(instance: models.Model, filename: str) -> str:
    """Store images under random names so that a URL reveals nothing about its role."""
    suffix = PurePosixPath(filename).suffix.lower() or ".jpg"
    return f"studies/{uuid.uuid4().hex}{suffix}"


def plan_sha256(plan: dict) -> str:
    """SHA-256 of an analysis plan in canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def methods_in_order(present: Iterable[str]) -> list[str]:
    """The FVR methods among ``present``, in FvrMethod's stable order, each once."""
    found = set(present)
    return [m for m in FvrMethod.values if m in found]


class StudyQuerySet(models.QuerySet):
    def open(self) -> "StudyQuerySet":
        return self.filter(status=Study.Status.OPEN)


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text="Shown to participants on consent.")
    status = models.CharField(max_length=8, choices=Status, default=Status.DRAFT)
    k = models.PositiveSmallIntegerField("K (candidates per question)", default=5)
    questions_per_method = models.PositiveSmallIntegerField(default=5)
    attention_checks = models.PositiveSmallIntegerField(
        default=2, help_text="Instructed-response items mixed into the questions."
    )
    attention_failures_allowed = models.PositiveSmallIntegerField(
        default=1,
        help_text="A participant is failed when failed checks exceed this (Prolific: 2 fails).",
    )
    prolific_study_id = models.CharField(
        "Prolific STUDY_ID",
        max_length=64,
        blank=True,
        help_text="When set, arrivals whose STUDY_ID differs are refused.",
    )
    completion_code = models.CharField(max_length=32, help_text="Prolific code: COMPLETED.")
    failed_attention_code = models.CharField(
        max_length=32, help_text="Prolific code: FAILED_ATTENTION_CHECK."
    )
    no_consent_code = models.CharField(max_length=32, help_text="Prolific code: NO_CONSENT.")
    estimated_minutes = models.PositiveSmallIntegerField(default=10)
    maximum_minutes = models.PositiveSmallIntegerField(default=40)
    max_participants = models.PositiveIntegerField(
        null=True, blank=True, help_text="Places available; empty for no limit."
    )
    speeder_seconds = models.FloatField(
        default=2.0, help_text="Answers faster than this are flagged (never rejected)."
    )
    is_demo = models.BooleanField(
        default=False, help_text="Pages say that this is a demo built from real photos."
    )
    randomise_candidate_order = models.BooleanField(
        default=True,
        help_text="Show each participant the K candidates in a random order (logged per "
        "question). Off, Photo 1 is always the recognizer's top match, which participants learn.",
    )
    accept_any_ids = models.BooleanField(
        "Accept made-up Prolific IDs",
        default=False,
        help_text="For pilots and demos only: accept any PROLIFIC_PID, STUDY_ID and SESSION_ID "
        "of 6–64 letters, digits, '-' or '_'. Off: only IDs as Prolific issues them "
        "(24 hexadecimal characters).",
    )
    analysis_plan = models.JSONField(
        default=dict,
        blank=True,
        help_text="Pre-registered analysis (outcomes, exclusions, tests, alpha, planned N); "
        "frozen when the study opens.",
    )
    analysis_plan_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    analysis_plan_frozen_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    objects = StudyQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "studies"
        ordering = ["-created_at"]
        # Least privilege for staff: viewing a study is not exporting its data or paying people.
        permissions = [
            ("export_responses", "Can export study responses and analysis reports"),
            ("operate_prolific", "Can approve, reject, bonus and return Prolific submissions"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(k__gte=2), name="study_k_at_least_2"),
            models.CheckConstraint(
                condition=Q(questions_per_method__gte=1), name="study_questions_per_method_min_1"
            ),
            models.CheckConstraint(
                condition=Q(maximum_minutes__gte=models.F("estimated_minutes")),
                name="study_maximum_not_below_estimate",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("survey:entry", kwargs={"slug": self.slug})

    @property
    def methods(self) -> list[str]:
        """The FVR methods that have match sets in this study, in a stable order."""
        # No ordering: MatchSet's default one would join the study table for nothing.
        return methods_in_order(
            self.match_sets.order_by().values_list("method", flat=True).distinct()
        )

    @property
    def time_limit(self) -> timedelta:
        """How long a participant has from entry: the study's maximum minutes."""
        return timedelta(minutes=self.maximum_minutes)

    @property
    def analysis_plan_changed(self) -> bool:
        """The plan differs from the one frozen when the study opened (a deviation)."""
        return bool(self.analysis_plan_sha256) and (
            plan_sha256(self.analysis_plan) != self.analysis_plan_sha256
        )

    @property
    def question_count(self) -> int:
        """Questions one participant answers, attention checks included."""
        return self.questions_per_method * len(self.methods) + self.attention_checks


class MatchSet(models.Model):
    """A reconstruction and the top-K gallery faces a recognizer returned for it."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="match_sets")
    key = models.CharField(max_length=100, help_text="Identifier from the import manifest.")
    method = models.CharField(max_length=16, choices=FvrMethod)
    query_image = models.ImageField(upload_to=image_upload_to)
    target_identity = models.CharField(max_length=200)
    provenance = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "method", "key"]
        constraints = [
            models.UniqueConstraint(fields=["study", "key"], name="matchset_unique_key_per_study"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.method})"


class Candidate(models.Model):
    """One of the K gallery faces shown beside a reconstruction."""

    match_set = models.ForeignKey(MatchSet, on_delete=models.CASCADE, related_name="candidates")
    rank = models.PositiveSmallIntegerField(help_text="1 = most similar according to F'.")
    identity = models.CharField(max_length=200)
    image = models.ImageField(upload_to=image_upload_to)
    is_true = models.BooleanField(help_text="Hidden from participants.")
    score = models.FloatField(null=True, blank=True, help_text="Similarity from F', if known.")

    class Meta:
        ordering = ["match_set", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["match_set", "rank"], name="candidate_unique_rank"),
            models.CheckConstraint(condition=Q(rank__gte=1), name="candidate_rank_positive"),
        ]

    def __str__(self) -> str:
        return f"#{self.rank} {self.identity}"

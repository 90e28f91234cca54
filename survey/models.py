"""The participant study: studies, match sets, participants, assignments and responses.

Invariants live in the database (unique and check constraints); writes that touch several
rows are service functions in `survey/services.py`.
"""

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone


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


def pseudonymise(prolific_pid: str) -> str:
    """Stable HMAC pseudonym of a Prolific ID, used in exports instead of the ID."""
    key = settings.FVR_PSEUDONYM_KEY.encode()
    return hmac.new(key, prolific_pid.encode(), hashlib.sha256).hexdigest()[:16]


def _time_up_at() -> models.Expression:
    """When a participant's time is up: entry plus the study's maximum minutes (SQL)."""
    # An IntegerField (SQLite multiplies durations only by plain integers) times a minute.
    minutes = models.ExpressionWrapper(
        models.F("study__maximum_minutes"), output_field=models.IntegerField()
    )
    return models.ExpressionWrapper(
        models.F("entered_at")
        + models.ExpressionWrapper(
            minutes * timedelta(minutes=1), output_field=models.DurationField()
        ),
        output_field=models.DateTimeField(),
    )


class ParticipantQuerySet(models.QuerySet):
    def counted_for_balance(self, *, now: datetime | None = None) -> "ParticipantQuerySet":
        """Participants who hold a place and count for balance: completed ones, and active ones
        still within their study's maximum time (neither returned, failed nor timed out)."""
        return self.alias(time_up_at=_time_up_at()).filter(
            Q(status=Participant.Status.COMPLETED)
            | Q(status=Participant.Status.ACTIVE, time_up_at__gt=now or timezone.now())
        )

    def overdue(self, *, now: datetime | None = None) -> "ParticipantQuerySet":
        """Active participants past their study's maximum time: to be marked TIMED_OUT."""
        return self.alias(time_up_at=_time_up_at()).filter(
            status=Participant.Status.ACTIVE, time_up_at__lte=now or timezone.now()
        )


class Participant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        NO_CONSENT = "no_consent", "Declined consent"
        FAILED_ATTENTION = "failed_attention", "Failed attention checks"
        RETURNED = "returned", "Returned"
        TIMED_OUT = "timed_out", "Timed out"

    class Step(models.TextChoices):
        CONSENT = "consent", "Consent"
        DEMOGRAPHICS = "demographics", "Demographics"
        INSTRUCTIONS = "instructions", "Instructions"
        QUESTIONS = "questions", "Questions"
        DEBRIEF = "debrief", "Debrief"
        DONE = "done", "Done"

    class Gender(models.TextChoices):
        WOMAN = "woman", "Woman"
        MAN = "man", "Man"
        NON_BINARY = "non_binary", "Non-binary"
        SELF_DESCRIBED = "other", "Another gender"
        UNDISCLOSED = "undisclosed", "Prefer not to say"

    class AgeGroup(models.TextChoices):
        A18_29 = "18-29", "18–29"
        A30_39 = "30-39", "30–39"
        A40_49 = "40-49", "40–49"
        A50_59 = "50-59", "50–59"
        A60_PLUS = "60+", "60 or older"
        UNDISCLOSED = "undisclosed", "Prefer not to say"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="participants")
    prolific_pid = models.CharField("Prolific ID", max_length=64, blank=True)
    pseudonym = models.CharField(max_length=16, db_index=True)
    session_id = models.CharField("Prolific SESSION_ID", max_length=64)
    status = models.CharField(max_length=16, choices=Status, default=Status.ACTIVE)
    step = models.CharField(max_length=16, choices=Step, default=Step.CONSENT)
    gender = models.CharField(max_length=16, choices=Gender, blank=True)
    age_group = models.CharField(max_length=16, choices=AgeGroup, blank=True)
    current_position = models.PositiveSmallIntegerField(
        default=1, help_text="The question the participant answers next (1-based)."
    )
    attention_failures = models.PositiveSmallIntegerField(default=0)
    completion_code = models.CharField(max_length=32, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    client_hash = models.CharField(
        max_length=32,
        blank=True,
        help_text="Keyed hash of the client's IP address at entry (never the address).",
    )
    session_verified_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When Prolific's API confirmed the SESSION_ID as this participant's "
        "submission to this study; empty: not verified.",
    )
    integrity_flags = models.JSONField(
        default=list,
        blank=True,
        help_text="Reasons to doubt this participation (e.g. a re-entry under a new ID after "
        "declining or failing); flagged participants are left out of approval.",
    )
    entered_at = models.DateTimeField(auto_now_add=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ParticipantQuerySet.as_manager()

    class Meta:
        ordering = ["-entered_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "pseudonym"], name="participant_one_per_pid_per_study"
            ),
            models.CheckConstraint(
                condition=Q(current_position__gte=1), name="participant_position_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.pseudonym

    @property
    def is_finished(self) -> bool:
        return self.status != self.Status.ACTIVE


class AssignmentQuerySet(models.QuerySet):
    def with_question_total(self) -> "AssignmentQuerySet":
        """Annotate ``question_total``, the participant's number of questions, in the same query
        (the progress bar and the last-question check need it; the study's own count would
        cost a query over its match sets)."""
        total = (
            Assignment.objects.filter(participant=models.OuterRef("participant"))
            .order_by()
            .values("participant")
            .annotate(n=models.Count("pk"))
            .values("n")
        )
        return self.annotate(question_total=models.Subquery(total))


class Assignment(models.Model):
    """One question slot of one participant: which match set, at which position."""

    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="assignments"
    )
    match_set = models.ForeignKey(MatchSet, on_delete=models.PROTECT, related_name="assignments")
    position = models.PositiveSmallIntegerField()
    token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    is_attention_check = models.BooleanField(default=False)
    attention_rank = models.PositiveSmallIntegerField(null=True, blank=True)
    attention_confidence = models.PositiveSmallIntegerField(null=True, blank=True)
    candidate_order = models.JSONField(
        default=list, blank=True, help_text="Candidate ranks in the order shown (photo 1 first)."
    )
    served_at = models.DateTimeField(null=True, blank=True)

    objects = AssignmentQuerySet.as_manager()

    class Meta:
        ordering = ["participant", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "position"], name="assignment_unique_position"
            ),
            models.UniqueConstraint(
                fields=["participant", "match_set"],
                condition=Q(is_attention_check=False),
                name="assignment_match_set_once_per_participant",
            ),
            models.CheckConstraint(
                condition=Q(is_attention_check=False)
                | (Q(attention_rank__gte=1) & Q(attention_confidence__range=(1, 5))),
                name="assignment_attention_check_has_instruction",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.participant} Q{self.position}"

    def display_order(self, k: int) -> list[int]:
        """Candidate ranks in the order shown; rank order if none was drawn."""
        return list(self.candidate_order) or list(range(1, k + 1))

    def photo_number(self, rank: int, k: int) -> int:
        """The 'Photo N' label under which the candidate of this rank is shown."""
        return self.display_order(k).index(rank) + 1


class Confidence(models.IntegerChoices):
    NOT_AT_ALL = 1, "Not confident at all"
    SLIGHTLY = 2, "Slightly confident"
    SOMEWHAT = 3, "Somewhat confident"
    FAIRLY = 4, "Fairly confident"
    VERY = 5, "Very confident"


class Response(models.Model):
    """A participant's answer to one question. The first answer stands."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="responses")
    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="response")
    selected_ranks = models.JSONField(default=list, help_text="Sorted ranks marked as a match.")
    none_selected = models.BooleanField(default=False)
    confidence = models.PositiveSmallIntegerField(choices=Confidence)
    any_correct = models.BooleanField(help_text="At least one true match was selected.")
    attention_passed = models.BooleanField(null=True, blank=True)
    is_fast = models.BooleanField(
        default=False, help_text="Answered faster than the study's limit."
    )
    served_at = models.DateTimeField()
    answered_at = models.DateTimeField()

    class Meta:
        ordering = ["participant", "assignment__position"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "assignment"], name="response_one_per_question"
            ),
            models.CheckConstraint(
                condition=Q(confidence__gte=1) & Q(confidence__lte=5),
                name="response_confidence_1_to_5",
            ),
            models.CheckConstraint(
                condition=Q(none_selected=False) | Q(selected_ranks=[]),
                name="response_none_excludes_selection",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.assignment}: {self.selected_ranks or 'none'} ({self.confidence})"

    @property
    def duration_seconds(self) -> float:
        return (self.answered_at - self.served_at).total_seconds()


class PageVisit(models.Model):
    """When a non-question page was first served and when it was submitted."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="visits")
    page = models.CharField(max_length=16, choices=Participant.Step)
    served_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["participant", "served_at"]
        constraints = [
            models.UniqueConstraint(fields=["participant", "page"], name="pagevisit_unique_page"),
        ]

    def __str__(self) -> str:
        return f"{self.participant} {self.page}"


class RefusedRequest(models.Model):
    """A refused participant action (wrong question, after completion, bad input): the log."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, null=True, blank=True)
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, null=True, blank=True)
    reason = models.CharField(max_length=64)
    detail = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.reason} at {self.at:%Y-%m-%d %H:%M:%S}"


class AuditEvent(models.Model):
    """Who did what to study data: exports, analyses, deletions, Prolific operations."""

    class Action(models.TextChoices):
        EXPORT = "export", "Exported responses"
        ANALYSIS = "analysis", "Ran an analysis"
        DELETE_PARTICIPANT = "delete_participant", "Deleted a participant's data"
        PURGE_IDS = "purge_ids", "Purged Prolific IDs"
        PROLIFIC_VERIFY = "prolific_verify", "Verified a Prolific submission"
        PROLIFIC_APPROVE = "prolific_approve", "Approved Prolific submissions"
        PROLIFIC_REJECT = "prolific_reject", "Rejected a Prolific submission"
        PROLIFIC_BONUS = "prolific_bonus", "Paid a Prolific bonus"
        PROLIFIC_RETURN = "prolific_return", "Requested a Prolific return"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(
        max_length=150, help_text="The staff username, or 'command:<name>' for a command."
    )
    action = models.CharField(max_length=32, choices=Action)
    study = models.ForeignKey(Study, on_delete=models.SET_NULL, null=True, blank=True)
    subject = models.CharField(
        max_length=64,
        blank=True,
        help_text="The participant's pseudonym (never the raw Prolific ID), or a submission.",
    )
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.actor} at {self.at:%Y-%m-%d %H:%M:%S}"


class ProlificBonus(models.Model):
    """A bonus for one Prolific submission. At most one per submission: paying twice is refused.

    Prolific's pay call is not idempotent, so the row is created (and the unique constraint
    claimed) before the API is called; a row that is not ``paid`` is retried, never duplicated.
    """

    class State(models.TextChoices):
        SETUP = "setup", "Set up at Prolific, not yet paid"
        PAID = "paid", "Paid"
        FAILED = "failed", "Failed"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="bonuses")
    submission_id = models.CharField(max_length=64)
    participant = models.ForeignKey(
        Participant, on_delete=models.SET_NULL, null=True, blank=True, related_name="bonuses"
    )
    amount_pence = models.PositiveIntegerField(help_text="In the study's currency's minor unit.")
    reason = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=8, choices=State, default=State.SETUP)
    prolific_bonus_id = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "submission_id"], name="prolificbonus_one_per_submission"
            ),
            models.CheckConstraint(
                condition=Q(amount_pence__gt=0), name="prolificbonus_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"bonus {self.amount_pence} for {self.submission_id} ({self.state})"


class RateCounter(models.Model):
    """Requests one client made in one time window: a fixed-window limit every worker shares."""

    scope = models.CharField(max_length=16, help_text="What is limited, e.g. 'entry'.")
    client = models.CharField(
        max_length=32, help_text="Keyed hash of the client's IP address (never the address)."
    )
    window_start = models.PositiveBigIntegerField(help_text="Unix time the window began.")
    hits = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "client", "window_start"], name="ratecounter_one_per_window"
            ),
        ]
        indexes = [models.Index(fields=["window_start"], name="ratecounter_window_idx")]

    def __str__(self) -> str:
        return f"{self.scope} {self.client}@{self.window_start}: {self.hits}"

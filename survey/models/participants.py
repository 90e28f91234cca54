"""Participants and what they do: assignments (their questions), responses and page visits."""

import hashlib
import hmac
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from survey.models.study import MatchSet, Study


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

    def released(
        self, *, now: datetime | None = None, study: Study | None = None
    ) -> "ParticipantQuerySet":
        """The complement of `counted_for_balance`: participations that ended without
        completing (declined, failed, timed out, returned) and active ones past their study's
        maximum time, marked or not. Their places and question sets go to others.

        ``study``: only this study's participants, whose time limit is then a constant: the
        query joins no study row (a slot claim's subquery, the re-entry checks)."""
        ended = [
            Participant.Status.NO_CONSENT,
            Participant.Status.FAILED_ATTENTION,
            Participant.Status.TIMED_OUT,
            Participant.Status.RETURNED,
        ]
        now = now or timezone.now()
        if study is not None:
            out_of_time = Q(
                status=Participant.Status.ACTIVE, entered_at__lte=now - study.time_limit
            )
            return self.filter(Q(status__in=ended) | out_of_time, study=study)
        return self.alias(time_up_at=_time_up_at()).filter(
            Q(status__in=ended) | Q(status=Participant.Status.ACTIVE, time_up_at__lte=now)
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
    question_count = models.PositiveSmallIntegerField(
        default=0,
        help_text="Questions assigned, attention checks included (0 until they are assigned).",
    )
    current_served_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the current question was first shown (empty: not shown yet); its "
        "answer keeps this time as its served_at.",
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
            # A Prolific session belongs to one person (purged rows keep an empty one).
            models.UniqueConstraint(
                fields=["study", "session_id"],
                condition=~Q(session_id=""),
                name="participant_one_per_session_per_study",
            ),
            models.CheckConstraint(
                condition=Q(current_position__gte=1), name="participant_position_positive"
            ),
        ]
        indexes = [
            # Who of a study no longer holds a place (`ParticipantQuerySet.released`): the
            # ended, and the active who entered before the time limit, without reading the
            # rest; a slot claim asks it (survey.services.slots).
            models.Index(fields=["study", "status", "entered_at"], name="participant_study_status"),
        ]

    def __str__(self) -> str:
        return self.pseudonym

    @property
    def is_finished(self) -> bool:
        return self.status != self.Status.ACTIVE


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
    # When it was shown: Response.served_at once answered, Participant.current_served_at while
    # it is the participant's current question (kept on the participant row, which the answer
    # updates anyway: showing the next question with an answer writes nothing more).

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

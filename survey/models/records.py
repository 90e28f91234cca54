"""Records kept beside the study: refused requests, the audit log, Prolific bonuses and rate
counters.
"""

from django.db import models
from django.db.models import Q

from survey.models.participants import Participant
from survey.models.study import Study


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

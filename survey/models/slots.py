"""Assignment slots: participants' question sets decided ahead, claimed without a study lock.

A study's arrivals used to choose their questions one at a time under the study row's lock
(to read consistent counts), so a burst of arrivals queued on that one row. Instead, a
sequence of question sets — each one participant's match sets — is decided ahead in batches
(`survey.assignment.plans_generate`: the same balanced choice, made against the counts of
the sets decided before it, so every prefix of the sequence is balanced), stored as slots
numbered in order, and each participant claims the lowest free slot with
``SELECT … FOR NO KEY UPDATE SKIP LOCKED``: concurrent claims take different rows and never
wait for each other. A slot is free when nobody holds it, or when its holder no longer counts
for balance (returned, failed, timed out, or past the study's maximum minutes): the next
arrival takes that participant's match sets over, as the old least-used choice did.

A slot whose holder completed is *settled*: it is never free again, and a claim does not look
at it (a partial index holds the unsettled slots only), so a claim walks the slots of the
participants still in progress, not every slot of the study: its cost does not grow with the
number who have completed (benchmarks/load/slot_claim.py).
"""

from django.db import models

from survey.models.participants import Participant
from survey.models.study import Study


class AssignmentSlot(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="assignment_slots")
    seq = models.PositiveIntegerField(help_text="Claimed in this order (lowest free first).")
    design = models.CharField(
        max_length=16,
        help_text="Fingerprint of the study's match sets when decided; slots of an older "
        "design are not claimed.",
    )
    match_sets = models.JSONField(help_text="The ids of the match sets this slot's holder answers.")
    participant = models.OneToOneField(
        Participant,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assignment_slot",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    settled = models.BooleanField(
        default=False,
        help_text="Its holder completed the study: never free again, and not looked at by a claim.",
    )

    class Meta:
        ordering = ["study", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["study", "seq"], name="assignment_slot_seq_unique"),
        ]
        indexes = [
            # What a claim walks, lowest first: the slots not settled.
            models.Index(
                fields=["study", "design", "seq"],
                condition=models.Q(settled=False),
                name="assignment_slot_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.study.slug} slot {self.seq}"

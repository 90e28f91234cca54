"""When the current question was shown moves from the question (Assignment.served_at) to the
participant (Participant.current_served_at), whose row the answer updates anyway: an answer shown
with the next question writes one row less (issue 19). An answered question's time was already
kept by its answer (Response.served_at); the current question's is copied here."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def current_served_at_fill(apps, schema_editor) -> None:
    Assignment = apps.get_model("survey", "Assignment")
    Participant = apps.get_model("survey", "Participant")
    shown = Assignment.objects.filter(
        participant=OuterRef("pk"), position=OuterRef("current_position")
    ).values("served_at")[:1]
    Participant.objects.filter(step="questions").update(current_served_at=Subquery(shown))


def served_at_restore(apps, schema_editor) -> None:
    Assignment = apps.get_model("survey", "Assignment")
    Participant = apps.get_model("survey", "Participant")
    for p in Participant.objects.filter(step="questions", current_served_at__isnull=False):
        Assignment.objects.filter(participant=p, position=p.current_position).update(
            served_at=p.current_served_at
        )
    Response = apps.get_model("survey", "Response")
    Assignment.objects.filter(response__isnull=False).update(
        served_at=Subquery(
            Response.objects.filter(assignment=OuterRef("pk")).values("served_at")[:1]
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("survey", "0007_assignment_slots"),
    ]

    operations = [
        migrations.AddField(
            model_name="participant",
            name="current_served_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the current question was first shown (empty: not shown yet); "
                "its answer keeps this time as its served_at.",
                null=True,
            ),
        ),
        migrations.RunPython(current_served_at_fill, served_at_restore, elidable=False),
        migrations.RemoveField(
            model_name="assignment",
            name="served_at",
        ),
    ]

"""A slot whose holder completed is settled (AssignmentSlot.settled): never free again, and a
claim walks only the unsettled slots (a partial index), asking who of the study no longer holds
a place through an index on (study, status, entered_at), so its cost no longer grows with the
number of participants who completed (issue 19). The slots of those who completed already
are settled here."""

from django.db import migrations, models


def completed_holders_settle(apps, schema_editor) -> None:
    AssignmentSlot = apps.get_model("survey", "AssignmentSlot")
    AssignmentSlot.objects.filter(participant__status="completed").update(settled=True)


class Migration(migrations.Migration):
    dependencies = [
        ("survey", "0008_served_at_on_participant"),
    ]

    operations = [
        migrations.AddField(
            model_name="assignmentslot",
            name="settled",
            field=models.BooleanField(
                default=False,
                help_text="Its holder completed the study: never free again, and not looked at "
                "by a claim.",
            ),
        ),
        migrations.AddIndex(
            model_name="assignmentslot",
            index=models.Index(
                condition=models.Q(("settled", False)),
                fields=["study", "design", "seq"],
                name="assignment_slot_open",
            ),
        ),
        migrations.AddIndex(
            model_name="participant",
            index=models.Index(
                fields=["study", "status", "entered_at"], name="participant_study_status"
            ),
        ),
        # Unsettling on the way back is nothing to undo: the field goes.
        migrations.RunPython(completed_holders_settle, migrations.RunPython.noop),
    ]

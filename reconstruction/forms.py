"""Admin forms of the reconstruction app."""

from __future__ import annotations

from django import forms

from reconstruction.models import FaceDataset
from survey.models import FvrMethod


def recognizer_choices() -> list[tuple[str, str]]:
    """The registered recognizers (imports torch: called when the form is built, not at start)."""
    from reconstruction.recognizers.registry import RECOGNIZERS

    return [("", "—"), *((name, name) for name in RECOGNIZERS)]


class JobLaunchForm(forms.Form):
    """Which long job to enqueue, on which dataset, with which settings."""

    JOB_CHOICES = [
        ("embed", "Embed the dataset's faces"),
        ("eigenbasis", "Fit the Eigenfaces basis"),
        ("train", "Train a parametric reconstructor"),
        ("reconstruct", "Reconstruct the target split"),
        ("topk", "Evaluate Metric 1 (top-K)"),
    ]

    job = forms.ChoiceField(choices=JOB_CHOICES)
    dataset = forms.ModelChoiceField(
        queryset=FaceDataset.objects.filter(imported_at__isnull=False),
        to_field_name="name",
    )
    recognizer = forms.ChoiceField(choices=recognizer_choices, required=False)
    method = forms.ChoiceField(choices=[("", "—"), *FvrMethod.choices], required=False)
    preset = forms.ChoiceField(choices=[("paper", "paper"), ("tiny", "tiny")], initial="paper")
    targets = forms.IntegerField(min_value=1, required=False, help_text="Blank: all targets.")
    seed = forms.IntegerField(min_value=0, initial=0)
    device = forms.CharField(initial="cpu", max_length=16, help_text="cpu, cuda or cuda:N")

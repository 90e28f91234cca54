"""Participant-page forms: they only check shape; services decide what is allowed."""

from django import forms

from survey.models import Confidence, Participant


class ConsentForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[("agree", "I agree to take part"), ("decline", "I do not agree")],
        widget=forms.RadioSelect,
        error_messages={"required": "Please choose whether you agree to take part."},
    )


class DemographicsForm(forms.Form):
    gender = forms.ChoiceField(
        choices=Participant.Gender.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Please choose an option (or 'Prefer not to say')."},
    )
    age_group = forms.ChoiceField(
        label="Age group",
        choices=Participant.AgeGroup.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Please choose an option (or 'Prefer not to say')."},
    )


class AnswerForm(forms.Form):
    question = forms.UUIDField(widget=forms.HiddenInput)
    # Photo numbers as shown (1 = the first photo on the page), never the recognizer's ranks:
    # the server maps them to candidates with the question's stored display order.
    selected = forms.TypedMultipleChoiceField(
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": "Selected photos must be one of the photos shown."},
    )
    none_of_these = forms.BooleanField(required=False)
    confidence = forms.TypedChoiceField(
        coerce=int,
        choices=[(str(value), label) for value, label in Confidence.choices],
        widget=forms.RadioSelect,
        error_messages={
            "required": "Please rate how confident you are.",
            "invalid_choice": "Confidence must be one of the five options.",
        },
    )

    def __init__(self, *args: object, k: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["selected"].choices = [(str(n), f"Photo {n}") for n in range(1, k + 1)]

    def clean(self) -> dict:
        data = super().clean()
        selected, none = data.get("selected") or [], data.get("none_of_these")
        if selected and none:
            raise forms.ValidationError("Choose either photos or 'none of these', not both.")
        if "selected" in data and not selected and not none:
            raise forms.ValidationError("Select at least one photo, or 'none of these'.")
        return data

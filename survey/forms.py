"""Participant-page forms: they only check shape; services decide what is allowed."""

from django import forms

from survey import services
from survey.models import Participant


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


def whole_number(text: object) -> int | None:
    """A form value written as a whole number ("3"; not "3.0", " 3", "٣" or "+3"), else None."""
    if isinstance(text, str) and 0 < len(text) <= 3 and text.isascii() and text.isdigit():
        return int(text)
    return None


class WholeNumberField(forms.Field):
    """One whole number; what range it must lie in is the service's rule (answer_validate)."""

    def to_python(self, value: object) -> int | None:
        if value in self.empty_values:
            return None
        number = whole_number(value)
        if number is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return number


class PhotoNumbersField(forms.Field):
    """The photo numbers ticked (checkboxes named alike): whole numbers, checked by the service."""

    widget = forms.CheckboxSelectMultiple

    def to_python(self, value: object) -> list[int]:
        if value in self.empty_values:
            return []
        values = value if isinstance(value, list | tuple) else [value]
        numbers = [whole_number(item) for item in values]
        if None in numbers:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return numbers


class AnswerForm(forms.Form):
    """An answer as the question page posts it: the one validation of answers over HTTP.

    Fields parse the post; the rules (which numbers, photos or 'none of these') are
    `survey.services.answer_validate`, called from `clean`, so each rule and its message exist
    once."""

    question = forms.UUIDField(widget=forms.HiddenInput)
    # Photo numbers as shown (1 = the first photo on the page), never the recognizer's ranks:
    # the server maps them to candidates with the question's stored display order.
    selected = PhotoNumbersField(required=False)
    none_of_these = forms.BooleanField(required=False)
    confidence = WholeNumberField(
        error_messages={
            "required": services.CONFIDENCE_MISSING,
            "invalid": services.CONFIDENCE_INVALID,
        },
    )

    def __init__(self, *args: object, k: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.k = k
        self.fields["selected"].error_messages["invalid"] = services.photos_invalid(k)

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        try:
            data["selected"] = services.answer_validate(
                k=self.k,
                selected_photos=data["selected"],
                none_selected=data["none_of_these"],
                confidence=data["confidence"],
            )
        except services.InvalidAnswer as error:
            raise forms.ValidationError(error.message, code=error.reason) from error
        return data

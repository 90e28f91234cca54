"""API serializers: plain input serializers that validate and hand over to services."""

from rest_framework import serializers

from survey.exports import LONG_COLUMNS


class StrictIntegerField(serializers.IntegerField):
    """An integer field that refuses strings, floats and booleans ("3", 3.0, True)."""

    default_error_messages = {"invalid": "A whole number (JSON integer) is required."}

    def to_internal_value(self, data: object) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class AnswerInputSerializer(serializers.Serializer):
    question = serializers.UUIDField(help_text="The question's token, from the state endpoint.")
    selected_photos = serializers.ListField(
        child=StrictIntegerField(min_value=1),
        allow_empty=True,
        max_length=50,
        help_text="The photo numbers selected, as shown on the page (Photo 1 = 1).",
    )
    none_of_these = serializers.BooleanField(default=False)
    confidence = StrictIntegerField(min_value=1, max_value=5)


class AnswerOutputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["recorded", "already_recorded"])
    question = serializers.UUIDField()
    next_url = serializers.CharField()


class ParticipantStateSerializer(serializers.Serializer):
    step = serializers.CharField()
    status = serializers.CharField()
    current_position = serializers.IntegerField()
    question_total = serializers.IntegerField()
    current_question = serializers.UUIDField(allow_null=True)
    next_url = serializers.CharField()


class LongRowSerializer(serializers.Serializer):
    """One exported response (documentation of the export's columns)."""

    def get_fields(self) -> dict:
        return {name: serializers.JSONField(read_only=True) for name in LONG_COLUMNS}

"""API serializers: read-only output, documented in the OpenAPI schema."""

from rest_framework import serializers

from survey.exports import LONG_COLUMNS


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

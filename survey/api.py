"""REST API v1: the participant's answers, and staff-only exports. One APIView per operation."""

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.authentication import CSRFCheck
from rest_framework.exceptions import APIException, NotAuthenticated, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response as ApiResponse
from rest_framework.views import APIView

from survey import services
from survey.exports import csv_lines, responses_long
from survey.flow import step_url
from survey.models import Assignment, Participant, Study
from survey.serializers import (
    AnswerInputSerializer,
    AnswerOutputSerializer,
    LongRowSerializer,
    ParticipantStateSerializer,
)
from survey.views import session_participant


class FlowRefused(APIException):
    def __init__(self, error: services.FlowError) -> None:
        super().__init__(detail={"detail": error.message, "code": error.reason})
        self.status_code = error.status


class IsStudyParticipant(permissions.BasePermission):
    """The request's session belongs to a participant of the study in the URL."""

    message = "No participant of this study is signed in: open the study from your Prolific link."

    def has_permission(self, request: Request, view: APIView) -> bool:
        study = get_object_or_404(Study, slug=view.kwargs["slug"])
        view.participant = session_participant(request._request, study)
        if view.participant is None:
            raise NotAuthenticated(self.message)
        if request.method not in permissions.SAFE_METHODS:
            enforce_csrf(request)
        return True


def enforce_csrf(request: Request) -> None:
    """Participants are session-bound but not Django users: check CSRF as for users."""
    check = CSRFCheck(lambda _request: None)
    check.process_request(request._request)
    reason = check.process_view(request._request, None, (), {})
    if reason:
        raise PermissionDenied(f"CSRF failed: {reason}. Reload the page and try again.")


class ParticipantStateApi(APIView):
    permission_classes = [IsStudyParticipant]

    @extend_schema(responses=ParticipantStateSerializer, summary="The participant's position")
    def get(self, request: Request, slug: str) -> ApiResponse:
        p: Participant = self.participant
        current = None
        if p.step == Participant.Step.QUESTIONS:
            current = (
                Assignment.objects.filter(participant=p, position=p.current_position)
                .values_list("token", flat=True)
                .first()
            )
        data = {
            "step": p.step,
            "status": p.status,
            "current_position": p.current_position,
            "question_total": p.study.question_count,
            "current_question": current,
            "next_url": step_url(p),
        }
        return ApiResponse(ParticipantStateSerializer(data).data)


class AnswerCreateApi(APIView):
    permission_classes = [IsStudyParticipant]

    @extend_schema(
        request=AnswerInputSerializer,
        responses={
            201: AnswerOutputSerializer,
            200: OpenApiResponse(AnswerOutputSerializer, "Already answered: first answer kept"),
            400: OpenApiResponse(description="Invalid answer"),
            403: OpenApiResponse(description="Not this participant's question"),
            409: OpenApiResponse(description="Not the current question, or finished"),
        },
        summary="Answer the current question",
    )
    def post(self, request: Request, slug: str) -> ApiResponse:
        serializer = AnswerInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            result = services.response_record(
                participant=self.participant,
                question=str(data["question"]),
                selected_ranks=data["selected_ranks"],
                none_selected=data["none_of_these"],
                confidence=data["confidence"],
            )
        except services.FlowError as error:
            raise FlowRefused(error) from error
        out = {
            "status": "recorded" if result.created else "already_recorded",
            "question": data["question"],
            "next_url": step_url(result.participant),
        }
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return ApiResponse(AnswerOutputSerializer(out).data, status=code)


class ResponseExportApi(APIView):
    """Staff only: every response of a study in long format (JSON)."""

    @extend_schema(responses=LongRowSerializer(many=True), summary="Long export (JSON)")
    def get(self, request: Request, slug: str) -> ApiResponse:
        study = get_object_or_404(Study, slug=slug)
        return ApiResponse(list(responses_long(study)))


class ResponseCsvExportApi(APIView):
    """Staff only: every response of a study in long format (CSV download)."""

    @extend_schema(
        responses={(200, "text/csv"): OpenApiResponse(description="Long-format CSV")},
        summary="Long export (CSV)",
    )
    def get(self, request: Request, slug: str) -> StreamingHttpResponse:
        study = get_object_or_404(Study, slug=slug)
        response = StreamingHttpResponse(
            csv_lines(responses_long(study)), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{study.slug}-responses.csv"'
        return response

"""REST API v1: the participant's answers, and staff-only exports. One APIView per operation."""

from typing import IO

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.authentication import CSRFCheck
from rest_framework.exceptions import APIException, NotAuthenticated, ParseError, PermissionDenied
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response as ApiResponse
from rest_framework.views import APIView

from survey import services
from survey.browser import browser_participant
from survey.dataprotection import actor_of, exports_audit
from survey.exports import csv_lines, responses_long
from survey.flow import step_url
from survey.models import Assignment, Participant, Study
from survey.serializers import (
    AnswerInputSerializer,
    AnswerOutputSerializer,
    LongRowSerializer,
    ParticipantStateSerializer,
)

# Django's slug converter: any other value never reaches a view (the URL does not resolve).
SLUG = OpenApiParameter(
    "slug", str, OpenApiParameter.PATH, pattern=r"^[-a-zA-Z0-9_]+$", description="The study."
)
NO_STUDY = OpenApiResponse(description="No study with this slug")
NOT_PARTICIPANT = OpenApiResponse(description="No participant of this study is signed in")
NOT_EXPORTER = OpenApiResponse(
    description="Staff login with the permission to export responses required"
)


class FlowRefused(APIException):
    def __init__(self, error: services.FlowError) -> None:
        super().__init__(detail={"detail": error.message, "code": error.reason})
        self.status_code = error.status


class IsStudyParticipant(permissions.BasePermission):
    """The request's browser is a participant of the study in the URL (survey.browser)."""

    message = "No participant of this study is signed in: open the study from your Prolific link."

    def has_permission(self, request: Request, view: APIView) -> bool:
        view.participant = browser_participant(request._request, view.kwargs["slug"])
        if view.participant is None:
            get_object_or_404(Study, slug=view.kwargs["slug"])  # an unknown study: 404, not 403
            raise NotAuthenticated(self.message)
        if request.method not in permissions.SAFE_METHODS:
            enforce_csrf(request)
        return True


def enforce_csrf(request: Request) -> None:
    """Participants are cookie-bound but not Django users: check CSRF as for users."""
    check = CSRFCheck(lambda _request: None)
    check.process_request(request._request)
    reason = check.process_view(request._request, None, (), {})
    if reason:
        raise PermissionDenied(f"CSRF failed: {reason}. Reload the page and try again.")


class ParticipantStateApi(APIView):
    permission_classes = [IsStudyParticipant]

    @extend_schema(
        parameters=[SLUG],
        responses={200: ParticipantStateSerializer, 403: NOT_PARTICIPANT, 404: NO_STUDY},
        summary="The participant's position",
    )
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


class AnswerJsonParser(JSONParser):
    """DRF's JSON parser; a body nested too deep for Python's decoder is a 400, not a 500."""

    def parse(
        self, stream: IO[bytes], media_type: str | None = None, parser_context: dict | None = None
    ) -> object:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise ParseError("JSON parse error - the body is nested too deeply.") from error


class AnswerCreateApi(APIView):
    permission_classes = [IsStudyParticipant]
    parser_classes = [AnswerJsonParser]

    @extend_schema(
        parameters=[SLUG],
        request=AnswerInputSerializer,
        responses={
            201: AnswerOutputSerializer,
            200: OpenApiResponse(AnswerOutputSerializer, "Already answered: first answer kept"),
            400: OpenApiResponse(description="Invalid answer"),
            403: OpenApiResponse(
                description="Not signed in as a participant, CSRF failed, or not their question"
            ),
            404: NO_STUDY,
            409: OpenApiResponse(description="Not the current question, or finished"),
            413: OpenApiResponse(description="Body over DATA_UPLOAD_MAX_MEMORY_SIZE"),
        },
        summary="Answer the current question",
    )
    def post(self, request: Request, slug: str) -> ApiResponse:
        try:
            body = request.data
        except RequestDataTooBig as error:
            # DRF lets Django's refusal through, which would answer with an HTML page.
            refused = services.BodyTooLarge(
                f"The request body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes; an "
                "answer takes a few hundred. Reload the page and answer again."
            )
            p = self.participant
            services.refusal_log(error=refused, study=p.study, participant=p)
            raise FlowRefused(refused) from error
        serializer = AnswerInputSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            result = services.response_record(
                participant=self.participant,
                question=str(data["question"]),
                selected_photos=data["selected_photos"],
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


class CanExportResponses(permissions.BasePermission):
    """Staff with `survey.export_responses`: viewing a study is not taking its data away."""

    message = "Exporting responses needs a staff login with the permission to export them."

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(user and user.is_staff and user.has_perm("survey.export_responses"))


class ResponseExportApi(APIView):
    """Staff who may export: every response of a study in long format (JSON)."""

    permission_classes = [CanExportResponses]

    @extend_schema(
        parameters=[SLUG],
        responses={200: LongRowSerializer(many=True), 403: NOT_EXPORTER, 404: NO_STUDY},
        summary="Long export (JSON)",
    )
    def get(self, request: Request, slug: str) -> ApiResponse:
        study = get_object_or_404(Study, slug=slug)
        exports_audit(actor=actor_of(request.user), studies=[study], via="api", fmt="json")
        return ApiResponse(list(responses_long(study)))


class ResponseCsvExportApi(APIView):
    """Staff who may export: every response of a study in long format (CSV download)."""

    permission_classes = [CanExportResponses]

    @extend_schema(
        parameters=[SLUG],
        responses={
            (200, "text/csv"): OpenApiResponse(description="Long-format CSV"),
            403: NOT_EXPORTER,
            404: NO_STUDY,
        },
        summary="Long export (CSV)",
    )
    def get(self, request: Request, slug: str) -> StreamingHttpResponse:
        study = get_object_or_404(Study, slug=slug)
        exports_audit(actor=actor_of(request.user), studies=[study], via="api", fmt="csv")
        response = StreamingHttpResponse(
            csv_lines(responses_long(study)), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{study.slug}-responses.csv"'
        return response

"""REST API v1: the participant's position, and staff-only exports. One APIView per operation.

Answers have one way in, the question page's form (survey.views.answer), which answers the
page's script in JSON; there is no second answer endpoint here."""

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response as ApiResponse
from rest_framework.views import APIView

from survey.browser import browser_participant
from survey.dataprotection import actor_of, exports_audit
from survey.exports import csv_lines, responses_long
from survey.flow import step_url
from survey.models import Assignment, Participant, Study
from survey.serializers import LongRowSerializer, ParticipantStateSerializer

# Django's slug converter: any other value never reaches a view (the URL does not resolve).
SLUG = OpenApiParameter(
    "slug", str, OpenApiParameter.PATH, pattern=r"^[-a-zA-Z0-9_]+$", description="The study."
)
NO_STUDY = OpenApiResponse(description="No study with this slug")
NOT_PARTICIPANT = OpenApiResponse(description="No participant of this study is signed in")
NOT_EXPORTER = OpenApiResponse(
    description="Staff login with the permission to export responses required"
)


class IsStudyParticipant(permissions.BasePermission):
    """The request's browser is a participant of the study in the URL (survey.browser)."""

    message = "No participant of this study is signed in: open the study from your Prolific link."

    def has_permission(self, request: Request, view: APIView) -> bool:
        view.participant = browser_participant(request._request, view.kwargs["slug"])
        if view.participant is None:
            get_object_or_404(Study, slug=view.kwargs["slug"])  # an unknown study: 404, not 403
            raise NotAuthenticated(self.message)
        return True


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

from django.conf import settings
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from survey import api


class DocsAccess(BasePermission):
    """The schema and its docs: staff only in production, open elsewhere (tools, CI read them)."""

    message = "The API documentation needs a staff login."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not settings.PRODUCTION:
            return True
        return bool(request.user and request.user.is_staff)


urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(permission_classes=[DocsAccess]), name="schema"),
    path(
        "docs/",
        # Swagger UI's scripts and styles come from drf-spectacular-sidecar's static files.
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[DocsAccess]),
        name="api-docs",
    ),
    path("studies/<slug:slug>/state/", api.ParticipantStateApi.as_view(), name="api-state"),
    path(
        "studies/<slug:slug>/responses/",
        api.ResponseExportApi.as_view(),
        name="api-responses",
    ),
    path(
        "studies/<slug:slug>/responses.csv",
        api.ResponseCsvExportApi.as_view(),
        name="api-responses-csv",
    ),
]

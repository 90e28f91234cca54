from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from survey import api

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny]), name="schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[AllowAny]),
        name="api-docs",
    ),
    path("studies/<slug:slug>/state/", api.ParticipantStateApi.as_view(), name="api-state"),
    path("studies/<slug:slug>/answers/", api.AnswerCreateApi.as_view(), name="api-answer"),
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

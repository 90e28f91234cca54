"""URL configuration: participant pages at /s/, the API at /api/v1/, the admin at /admin/."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve

handler500 = "config.errors.server_error"  # 503 + Retry-After when the database is unreachable

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("survey.api_urls")),
    path("", include("survey.urls")),
]

if settings.FVR_SERVE_MEDIA:
    media_prefix = settings.MEDIA_URL.lstrip("/")
    urlpatterns += [
        re_path(rf"^{media_prefix}(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT}),
    ]

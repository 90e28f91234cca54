"""URL configuration: participant pages at /s/, the API at /api/v1/, the admin at /admin/."""

from pathlib import Path

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve

from config.media import PUBLIC_MEDIA_DIR, staff_media

handler500 = "config.errors.server_error"  # 503 + Retry-After when the database is unreachable

urlpatterns = [
    path("admin/", admin.site.urls),
    # Dataset crops, reconstructions and weights, for the admin's staff only (config/media.py).
    path("staff/media/<path:name>", staff_media, name="staff_media"),
    path("api/v1/", include("survey.api_urls")),
    path("", include("survey.urls")),
]

if settings.FVR_SERVE_MEDIA:
    # The local demo's public media: study images only, as nginx and config.wsgi serve it.
    public_prefix = f"{settings.MEDIA_URL.lstrip('/')}{PUBLIC_MEDIA_DIR}/"
    urlpatterns += [
        re_path(
            rf"^{public_prefix}(?P<path>.*)$",
            serve,
            {"document_root": Path(settings.MEDIA_ROOT) / PUBLIC_MEDIA_DIR},
        ),
    ]

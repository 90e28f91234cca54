"""Which media is public: study images only. The rest is for staff, through `staff_media`.

Participants' pages show study images, stored under random names in ``studies/``
(survey.models.image_upload_to); they are served without a login by nginx
(deploy/nginx.conf), by `config.wsgi.MediaFiles` and by the DEBUG route (config/urls.py).
Everything else under MEDIA_ROOT — aligned dataset crops (``faces/``), reconstructions
(``reconstructions/``) and fitted bases and weights (``artifacts/``; reconstruction.models) —
is biometric data or a model of it: those three never serve it. `MediaStorage` (the default
storage for local media) gives such files the URL of `staff_media`, behind the admin's login, so
the admin's thumbnails and file links work for staff and for nobody else.
"""

import mimetypes
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.files.storage import FileSystemStorage, default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.functional import cached_property

# The one public folder of MEDIA_ROOT: survey.models.image_upload_to writes there.
PUBLIC_MEDIA_DIR = "studies"
# Shown in the page; anything else (weights, archives, SVG with its scripts) is downloaded.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
PUBLIC_URLS_KEPT = 100_000


def media_is_public(name: str) -> bool:
    """Whether the stored file ``name`` (relative to MEDIA_ROOT) is a public study image."""
    return PurePosixPath(name).parts[:1] == (PUBLIC_MEDIA_DIR,)


class MediaStorage(FileSystemStorage):
    """Local media whose URLs say who may read a file: a study image under MEDIA_URL, anything
    else through the staff-only `staff_media` view."""

    def url(self, name: str | None) -> str:
        if name is None:
            return super().url(name)
        # A study image's URL depends on its name and MEDIA_URL only: made once per name (a
        # question shows a dozen, ~100 questions a second at load). Bounded: a process serves
        # the images of a few studies.
        known = self._public_urls.get(name)
        if known is not None:
            return known
        if media_is_public(name):
            url = super().url(name)
            if len(self._public_urls) >= PUBLIC_URLS_KEPT:
                self._public_urls.clear()
            self._public_urls[name] = url
            return url
        return reverse("staff_media", kwargs={"name": name})

    @cached_property
    def _public_urls(self) -> dict[str, str]:
        return {}

    def _clear_cached_properties(self, setting: str, **kwargs: object) -> None:
        super()._clear_cached_properties(setting, **kwargs)
        if setting == "MEDIA_URL":  # the URLs made so far were under the old one
            self.__dict__.pop("_public_urls", None)


def _checked_name(name: str) -> str:
    """``name`` when it is a plain relative path; Http404 for traversal and odd characters."""
    parts = name.split("/")
    if "\\" in name or "\x00" in name or any(part in {"", ".", ".."} for part in parts):
        raise Http404("No such media file.")
    return name


def _media_path(name: str) -> Path:
    """The file under MEDIA_ROOT that ``name`` names; Http404 for anything outside it."""
    root = Path(settings.MEDIA_ROOT).resolve()
    path = root.joinpath(*_checked_name(name).split("/")).resolve()  # links: target inside too
    if not path.is_relative_to(root) or not path.is_file():
        raise Http404("No such media file.")
    return path


@staff_member_required
def staff_media(request: HttpRequest, name: str) -> HttpResponseBase:
    """A media file for staff (crops, reconstructions, weights): never public, never cached."""
    if not isinstance(default_storage, FileSystemStorage):
        return redirect(default_storage.url(_checked_name(name)))  # private bucket, presigned
    path = _media_path(name)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    response = FileResponse(
        path.open("rb"),
        content_type=content_type,
        as_attachment=content_type not in INLINE_TYPES,
        filename=path.name,
    )
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response

"""WSGI entry point (gunicorn config.wsgi).

With FVR_SERVE_MEDIA_WHITENOISE=1 and local media storage, question images are served by
`MediaFiles` in front of Django: no view, no session, no database query per image. Only the
public study images (config.media.PUBLIC_MEDIA_DIR): dataset crops, reconstructions and weights
are never served here (staff see them through config.media.staff_media). S3 storage serves its
own (presigned) URLs and needs none of this.
"""

import os
from pathlib import Path
from wsgiref.headers import Headers

from django.core.wsgi import get_wsgi_application
from whitenoise import WhiteNoise
from whitenoise.responders import StaticFile
from whitenoise.string_utils import decode_path_info, ensure_leading_trailing_slash

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Media names are random and never reused (survey.models.image_upload_to), so a browser may keep
# an image; "private" keeps shared caches from storing face photos.
MEDIA_CACHE_CONTROL = "private, max-age=86400, immutable"


def media_headers(headers: Headers, path: str, url: str) -> None:
    """Headers for a media file: private caching, no MIME sniffing, same-origin use only."""
    headers["Cache-Control"] = MEDIA_CACHE_CONTROL
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"


class MediaFiles(WhiteNoise):
    """WhiteNoise for a media folder (`with_media`: the public study images under ``root``),
    which also finds files uploaded after the server started.

    WhiteNoise indexes its folders once, at start-up; match sets are imported while the server
    runs. A URL under the media prefix that is not indexed yet is looked up on disk with
    WhiteNoise's own guards (canonical URL, path inside the root) and remembered; anything
    else goes to Django.
    """

    def __init__(self, app: object, *, root: Path, prefix: str) -> None:
        super().__init__(
            app, max_age=None, allow_all_origins=False, add_headers_function=media_headers
        )
        self.media_root = str(Path(root).resolve()) + os.sep
        self.media_prefix = ensure_leading_trailing_slash(prefix)
        if Path(root).is_dir():
            self.add_files(str(root), prefix)

    def media_file(self, url: str) -> StaticFile | None:
        """The file for a media URL, found on disk if it arrived after start-up."""
        static_file = self.files.get(url)
        if static_file is not None or not url.startswith(self.media_prefix):
            return static_file
        if not self.url_is_canonical(url):
            return None
        # A canonical URL has no "//" nor "..", so this stays a relative path under the root.
        path = self.media_root + url[len(self.media_prefix) :]
        if not self.path_is_child_of(path, self.media_root) or not Path(path).is_file():
            return None
        static_file = self.get_static_file(path, url)
        self.files[url] = static_file
        return static_file

    def __call__(self, environ: dict, start_response: object) -> object:
        url = decode_path_info(environ.get("PATH_INFO", ""))
        static_file = self.media_file(url)
        if static_file is not None:
            try:
                return self.serve(static_file, environ, start_response)
            except FileNotFoundError:
                # Deleted since it was indexed (a demo study rebuilt): forget it, answer 404.
                self.files.pop(url, None)
        return self.application(environ, start_response)


def with_media(app: object) -> object:
    """Wrap `app` in `MediaFiles` for the public study images, when settings ask for it and
    media is on local disk."""
    from django.conf import settings
    from django.core.files.storage import FileSystemStorage
    from django.utils.module_loading import import_string

    from config.media import PUBLIC_MEDIA_DIR

    local = issubclass(import_string(settings.STORAGES["default"]["BACKEND"]), FileSystemStorage)
    if settings.FVR_SERVE_MEDIA_WHITENOISE and local and settings.MEDIA_URL.startswith("/"):
        return MediaFiles(
            app,
            root=Path(settings.MEDIA_ROOT) / PUBLIC_MEDIA_DIR,
            prefix=f"{ensure_leading_trailing_slash(settings.MEDIA_URL)}{PUBLIC_MEDIA_DIR}/",
        )
    return app


application = with_media(application)

"""config.wsgi.MediaFiles: uploaded images served before Django, and only those."""

from pathlib import Path

from config.wsgi import MEDIA_CACHE_CONTROL, MediaFiles


def django_stand_in(environ: dict, start_response: object) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"from django"]


def get(app: MediaFiles, path: str) -> tuple[str, dict[str, str], bytes]:
    seen: dict = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response))
    return seen["status"], seen["headers"], body


def test_media_present_at_start_and_added_later_are_served_privately(tmp_path: Path) -> None:
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "a1.jpg").write_bytes(b"first")
    app = MediaFiles(django_stand_in, root=tmp_path, prefix="/media/")
    (tmp_path / "studies" / "b2.jpg").write_bytes(b"uploaded while running")

    for name, content in (("a1.jpg", b"first"), ("b2.jpg", b"uploaded while running")):
        status, headers, body = get(app, f"/media/studies/{name}")
        assert status.startswith("200")
        assert body == content
        assert headers["Content-Type"] == "image/jpeg"
        assert headers["Cache-Control"] == MEDIA_CACHE_CONTROL
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "Access-Control-Allow-Origin" not in headers


def test_traversal_unknown_and_deleted_names_go_to_django(tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "studies").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("not media")
    (media / "studies" / "gone.jpg").write_bytes(b"x")
    app = MediaFiles(django_stand_in, root=media, prefix="/media/")
    assert get(app, "/media/studies/gone.jpg")[0].startswith("200")
    (media / "studies" / "gone.jpg").unlink()

    for path in (
        "/media/../secret.txt",
        "/media/studies/../../secret.txt",
        "/media//secret.txt",
        "/media/studies/guessed.jpg",
        "/media/studies/gone.jpg",
        "/other/secret.txt",
    ):
        status, _, body = get(app, path)
        assert (status, body) == ("404 Not Found", b"from django"), path

"""deploy/nginx.conf in front of the app, as the load harness and a deployment run it.

nginx (its config checked by `nginx -t` first) proxies to pytest-django's live server. Clients
connect from loopback addresses of their own (127.0.0.2, 127.0.0.3), so nginx sees each as a
different client while the app sees every request come from nginx at 127.0.0.1.
"""

import http.client
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from benchmarks.load.server import Nginx, free_port
from survey.models import RateCounter
from tests.factories import StudyFactory
from tests.media_helpers import PNG, private_names
from tests.settings_helpers import deploy_environment
from tests.survey.http_helpers import arrival

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = [
    pytest.mark.skipif(
        not Path(NGINX).is_file(), reason="needs nginx: apt-get install nginx-light"
    ),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def front(live_server, tmp_path, settings) -> Iterator[Nginx]:
    """deploy/nginx.conf started in front of the live server, serving this test's media."""
    port = live_server.url.rsplit(":", 1)[1]
    (tmp_path / "nginx").mkdir()
    (tmp_path / "static").mkdir()
    nginx = Nginx(
        workdir=tmp_path / "nginx",
        port=free_port(),
        upstream=f"127.0.0.1:{port}",
        media_root=Path(settings.MEDIA_ROOT),
        static_root=tmp_path / "static",
    )
    nginx.start()
    try:
        yield nginx
    finally:
        nginx.stop()


def get(front: Nginx, path: str, *, source: str = "127.0.0.2") -> http.client.HTTPResponse:
    """GET ``path`` through nginx from the loopback address ``source``."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", front.port, timeout=20, source_address=(source, 0)
    )
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_nginx_serves_study_images_and_nothing_else_from_the_media_folder(front, settings) -> None:
    root = Path(settings.MEDIA_ROOT)
    names = {"study image": "studies/0123456789abcdef0123456789abcdef.jpg", **private_names()}
    for name in names.values():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(PNG)
    image = get(front, f"/media/{names['study image']}")
    assert image.status == 200
    assert image.headers["Cache-Control"] == "private, max-age=86400, immutable"
    for kind in ("crop", "reconstruction", "weights"):
        assert get(front, f"/media/{names[kind]}").status == 404, kind
    assert get(front, f"/media/studies/../{names['crop']}").status == 404
    # Staff reach them through the app, which asks for the admin's login.
    staff = get(front, reverse("staff_media", kwargs={"name": names["crop"]}))
    assert staff.status == 302
    assert staff.headers["Location"].startswith(reverse("admin:login"))


def test_with_the_deploy_environment_clients_behind_nginx_are_counted_apart(
    front, settings
) -> None:
    settings.FVR_TRUSTED_PROXIES = deploy_environment()["FVR_TRUSTED_PROXIES"].split(",")
    settings.FVR_ENTRY_RATE = "1/min"
    study = StudyFactory()
    entry = reverse("survey:entry", kwargs={"slug": study.slug})

    def arrive(source: str, n: int) -> int:
        return get(front, f"{entry}?{urlencode(arrival(n))}", source=source).status

    assert arrive("127.0.0.2", 0) == 302
    assert arrive("127.0.0.3", 1) == 302
    assert arrive("127.0.0.2", 2) == 429
    assert RateCounter.objects.count() == 2

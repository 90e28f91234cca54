"""The OpenAPI schema and its Swagger page: staff only in production, nothing from a CDN."""

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


class Assets(HTMLParser):
    """The URLs of every script and stylesheet a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and named.get("src"):
            self.urls.append(named["src"])
        if tag == "link" and named.get("href"):
            self.urls.append(named["href"])


def assets_of(html: str) -> list[str]:
    parser = Assets()
    parser.feed(html)
    return parser.urls


@pytest.fixture
def staff_client(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user("doc", password="x", is_staff=True))
    return client


@pytest.mark.parametrize("url_name", ["schema", "api-docs"])
def test_production_docs_refuse_anonymous_and_non_staff_users(
    settings, django_user_model, url_name
):
    settings.PRODUCTION = True
    client = Client()
    assert client.get(reverse(url_name)).status_code == 403
    client.force_login(django_user_model.objects.create_user("someone", password="x"))
    assert client.get(reverse(url_name)).status_code == 403


@pytest.mark.parametrize("url_name", ["schema", "api-docs"])
def test_production_docs_are_served_to_staff(settings, staff_client, url_name):
    settings.PRODUCTION = True
    assert staff_client.get(reverse(url_name)).status_code == 200


def test_docs_page_loads_its_scripts_and_styles_from_this_site_only(settings, staff_client):
    settings.PRODUCTION = True
    page = staff_client.get(reverse("api-docs"))
    assert page.status_code == 200
    urls = assets_of(page.content.decode())
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls)
    for url in urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{url} is on another origin"
        assert url.startswith(settings.STATIC_URL), f"{url} is not a static file"
        assert finders.find(url.removeprefix(settings.STATIC_URL)), f"{url} is not collected"

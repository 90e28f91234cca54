"""Entry rate limit per client IP, counted in the database and shared by every worker."""

import logging
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client
from django.urls import reverse

from survey.models import Participant, RateCounter, RefusedRequest, Study
from survey.ratelimit import (
    Rate,
    _untrusted_proxy_report,
    client_ip,
    client_key,
    rate_hit,
    rate_parse,
)
from tests.factories import StudyFactory
from tests.settings_helpers import KEY_VARIABLES, deploy_environment, load_settings, random_key
from tests.survey.http_helpers import arrival

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_proxy_reported():
    """This process has reported no untrusted proxy yet (it reports each one once)."""
    _untrusted_proxy_report.cache_clear()
    yield
    _untrusted_proxy_report.cache_clear()


def entry_url(study: Study) -> str:
    return reverse("survey:entry", kwargs={"slug": study.slug})


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("30/min", Rate(30, 60)),
        ("100/10m", Rate(100, 600)),
        ("5/s", Rate(5, 1)),
        ("2 / hour", Rate(2, 3600)),
        ("1000000/m", Rate(1_000_000, 60)),
        ("500/days", Rate(500, 86400)),
        ("off", None),
        ("", None),
        ("0/min", None),
    ],
)
def test_rates_are_read_from_the_setting(text: str, rate: Rate | None) -> None:
    assert rate_parse(text) == rate


@pytest.mark.parametrize("text", ["30", "thirty/min", "30/fortnight", "30/0s", "-1/min"])
def test_a_wrong_rate_setting_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="FVR_ENTRY_RATE"):
        rate_parse(text)


@pytest.mark.django_db
def test_entry_over_the_rate_is_answered_429_with_a_page_for_the_participant(settings) -> None:
    settings.FVR_ENTRY_RATE = "3/min"
    study = StudyFactory()
    client = Client()

    codes = [client.get(entry_url(study), arrival(n)).status_code for n in range(6)]

    assert codes == [302, 302, 302, 429, 429, 429]
    refused = client.get(entry_url(study), arrival(9))
    assert refused.status_code == 429
    page = refused.content.decode()
    assert "Too many attempts to open this study came from your network" in page
    assert "open the study again from your Prolific link" in page
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["Content-Security-Policy"]  # still a participant page
    assert "no-store" in refused["Cache-Control"]
    # Refused arrivals were not admitted, and the refusal is logged once per client and window.
    assert Participant.objects.filter(study=study).count() == 3
    log = RefusedRequest.objects.get(study=study)
    assert log.reason == "rate_limited"
    assert "3 per 60 s" in log.detail
    assert RateCounter.objects.get().hits == 7


@pytest.mark.django_db
def test_the_limit_is_per_client_and_stores_no_ip_address(settings) -> None:
    settings.FVR_ENTRY_RATE = "2/min"
    study = StudyFactory()
    for n in range(2):
        assert (
            Client(REMOTE_ADDR="198.51.100.7").get(entry_url(study), arrival(n)).status_code == 302
        )
    assert Client(REMOTE_ADDR="198.51.100.7").get(entry_url(study), arrival(2)).status_code == 429
    assert Client(REMOTE_ADDR="203.0.113.9").get(entry_url(study), arrival(3)).status_code == 302

    rows = list(RateCounter.objects.values_list("client", "hits"))
    assert sorted(hits for _, hits in rows) == [1, 3]
    assert not any("198.51" in client or "203.0" in client for client, _ in rows)


@pytest.mark.django_db
def test_a_forged_x_forwarded_for_does_not_escape_the_limit(settings) -> None:
    settings.FVR_ENTRY_RATE = "2/min"
    settings.FVR_TRUSTED_PROXIES = []
    study = StudyFactory()
    codes = [
        Client(REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
        .get(entry_url(study), arrival(n))
        .status_code
        for n in range(3)
    ]
    assert codes == [302, 302, 429]


@pytest.mark.django_db
def test_behind_a_trusted_proxy_each_forwarded_client_is_counted_apart(settings) -> None:
    settings.FVR_ENTRY_RATE = "1/min"
    settings.FVR_TRUSTED_PROXIES = ["127.0.0.1", "10.1.0.0/16"]
    study = StudyFactory()

    def via_proxy(forwarded: str, n: int) -> int:
        client = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
        return client.get(entry_url(study), arrival(n)).status_code

    assert via_proxy("198.51.100.1", 0) == 302
    assert via_proxy("198.51.100.2, 10.1.2.3", 1) == 302
    assert via_proxy("198.51.100.1", 2) == 429
    # What the client itself wrote (left of the address our proxy saw) is not believed.
    assert via_proxy("192.0.2.44, 198.51.100.1", 3) == 429


@pytest.mark.django_db
def test_with_the_deploy_example_s_environment_clients_behind_nginx_are_counted_apart(
    no_proxy_reported, settings, monkeypatch, tmp_path, caplog
) -> None:
    env = deploy_environment()
    # Its keys are placeholders, refused as they are (tests/test_settings.py): replaced here.
    env.update({name: random_key() for name in KEY_VARIABLES})
    loaded = load_settings(monkeypatch, tmp_path, **env)
    settings.FVR_TRUSTED_PROXIES = loaded["FVR_TRUSTED_PROXIES"]
    settings.FVR_ENTRY_RATE = "1/min"
    study = StudyFactory()

    def via_nginx(client: str, n: int) -> int:
        # deploy/nginx.conf proxies from loopback and appends the client's address.
        browser = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=client)
        return browser.get(entry_url(study), arrival(n)).status_code

    with caplog.at_level(logging.WARNING, logger="survey.ratelimit"):
        assert via_nginx("198.51.100.1", 0) == 302
        assert via_nginx("203.0.113.9", 1) == 302
        assert via_nginx("198.51.100.1", 2) == 429
    assert RateCounter.objects.count() == 2
    assert not [r for r in caplog.records if r.name == "survey.ratelimit"]


@pytest.mark.django_db
def test_a_proxy_that_is_not_trusted_is_reported_once_naming_the_variable(
    no_proxy_reported, settings, caplog
) -> None:
    settings.FVR_ENTRY_RATE = "30/min"
    settings.FVR_TRUSTED_PROXIES = []
    study = StudyFactory()
    with caplog.at_level(logging.WARNING, logger="survey.ratelimit"):
        Client(REMOTE_ADDR="198.51.100.7").get(entry_url(study), arrival(0))  # no proxy
        assert not [r for r in caplog.records if r.name == "survey.ratelimit"]
        for n in range(1, 4):
            Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").get(
                entry_url(study), arrival(n)
            )
    [warning] = [r for r in caplog.records if r.name == "survey.ratelimit"]
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert "X-Forwarded-For arrive from 127.0.0.1" in message
    assert "Set FVR_TRUSTED_PROXIES" in message
    assert "198.51.100" not in message  # the clients' addresses stay out of the log
    # Every client behind the proxy was counted as the proxy: one counter.
    assert RateCounter.objects.get(client=client_key("127.0.0.1")).hits == 3


def test_the_warning_never_logs_a_public_address(no_proxy_reported, rf, settings, caplog) -> None:
    settings.FVR_TRUSTED_PROXIES = []
    with caplog.at_level(logging.WARNING, logger="survey.ratelimit"):
        client_ip(rf.get("/", REMOTE_ADDR="93.184.216.34", HTTP_X_FORWARDED_FOR="10.0.0.1"))
    [warning] = [r for r in caplog.records if r.name == "survey.ratelimit"]
    assert "FVR_TRUSTED_PROXIES" in warning.getMessage()
    assert "93.184.216.34" not in warning.getMessage()


def test_client_ip_walks_x_forwarded_for_from_the_right(rf, settings) -> None:
    settings.FVR_TRUSTED_PROXIES = ["127.0.0.1", "10.1.0.0/16"]
    request = rf.get(
        "/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 5.6.7.8, 10.1.0.5"
    )
    assert client_ip(request) == "5.6.7.8"
    request = rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="not-an-ip, 10.1.0.5")
    assert client_ip(request) == "10.1.0.5"
    request = rf.get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="5.6.7.8")
    assert client_ip(request) == "192.0.2.1"
    settings.FVR_TRUSTED_PROXIES = ["not a network"]
    with pytest.raises(ImproperlyConfigured, match="FVR_TRUSTED_PROXIES"):
        client_ip(request)


def test_ipv6_clients_are_counted_per_64_block() -> None:
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:198.51.100.7") == client_key("198.51.100.7")


@pytest.mark.django_db
def test_a_new_window_starts_a_new_count_and_old_windows_are_pruned() -> None:
    rate = Rate(limit=2, seconds=60)
    assert [
        rate_hit(scope="entry", client="c1", rate=rate, now=600.0 + i)[0] for i in range(3)
    ] == [
        1,
        2,
        3,
    ]
    assert rate_hit(scope="entry", client="c2", rate=rate, now=610.0) == (1, 660)
    hits, window_end = rate_hit(scope="entry", client="c1", rate=rate, now=661.0)
    assert (hits, window_end) == (1, 720)
    # The client's first hit in the new window removed the windows that can no longer count.
    assert list(RateCounter.objects.values_list("client", "window_start", "hits")) == [
        ("c1", 660, 1)
    ]


@pytest.mark.django_db
def test_the_limit_is_off_outside_production_by_default(settings) -> None:
    settings.FVR_ENTRY_RATE = "off"
    study = StudyFactory()
    client = Client()
    assert {client.get(entry_url(study), arrival(n)).status_code for n in range(40)} == {302}
    assert not RateCounter.objects.exists()


# --- shared across workers (PostgreSQL) ----------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_simultaneous_requests_on_separate_connections_share_one_count(settings) -> None:
    """30 requests at once, each on its own database connection: exactly the limit passes."""
    settings.FVR_ENTRY_RATE = "10/min"
    study = StudyFactory()
    barrier = threading.Barrier(30)
    codes: list[int] = [0] * 30

    def arrive(i: int) -> None:
        barrier.wait()
        try:
            codes[i] = Client().get(entry_url(study), arrival(i)).status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=arrive, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert Counter(codes) == {302: 10, 429: 20}
    assert RateCounter.objects.get().hits == 30
    assert Participant.objects.filter(study=study).count() == 10
    assert RefusedRequest.objects.filter(reason="rate_limited").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_another_process_counts_into_the_same_window() -> None:
    """A second OS process (another gunicorn worker, or another host) sees and adds to the count."""
    rate = Rate(limit=5, seconds=60)
    assert rate_hit(scope="entry", client="shared", rate=rate, now=6000.0)[0] == 1
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    code = (
        "import django; django.setup()\n"
        "from survey.ratelimit import Rate, rate_hit\n"
        "print([rate_hit(scope='entry', client='shared', rate=Rate(5, 60), now=6001.0)[0]"
        " for _ in range(3)])\n"
    )
    worker = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.strip() == "[2, 3, 4]"
    assert rate_hit(scope="entry", client="shared", rate=rate, now=6002.0)[0] == 5
    assert rate_hit(scope="entry", client="shared", rate=rate, now=6003.0)[0] == 6

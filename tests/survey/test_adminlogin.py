"""Admin login: failed passwords limited per account and per network, counted in the database."""

import time

import pytest
from django.urls import reverse

from survey.models import RateCounter

pytestmark = pytest.mark.django_db

PASSWORD = "right-password-123"
THROTTLED = "Too many failed logins"
WINDOW = 15 * 60  # the default FVR_ADMIN_LOGIN_RATE is 5/15m


@pytest.fixture
def staff(django_user_model):
    django_user_model.objects.create_user("alice", password=PASSWORD, is_staff=True)
    django_user_model.objects.create_user("bob", password=PASSWORD, is_staff=True)


def login(client, username: str, password: str, ip: str = "203.0.113.7"):
    """Post the admin login form from `ip`: a redirect when it logged in, else the form."""
    response = client.post(
        reverse("admin:login"),
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=ip,
    )
    client.logout()
    return response


def refused(response) -> bool:
    return response.status_code == 200 and THROTTLED in response.content.decode()


def test_sixth_attempt_after_five_failures_is_refused_even_with_the_right_password(
    client, staff, monkeypatch
):
    for _ in range(5):
        failed = login(client, "alice", "wrong")
        assert failed.status_code == 200
        assert "Please enter the correct username and password" in failed.content.decode()
    assert refused(login(client, "alice", PASSWORD))
    assert refused(login(client, "ALICE", "wrong"))  # case does not make a new account key
    later = time.time() + WINDOW + 1
    monkeypatch.setattr(time, "time", lambda: later)
    assert login(client, "alice", PASSWORD).status_code == 302


def test_one_accounts_failures_leave_another_account_alone(client, staff):
    for _ in range(6):
        login(client, "alice", "wrong")
    assert refused(login(client, "alice", PASSWORD))
    assert login(client, "bob", PASSWORD).status_code == 302


def test_successful_logins_do_not_count_nor_reset_anyone_elses_failures(client, staff):
    for _ in range(4):
        login(client, "alice", "wrong")
    for _ in range(6):
        assert login(client, "bob", PASSWORD).status_code == 302  # only failures count
    assert login(client, "alice", PASSWORD).status_code == 302
    assert not refused(login(client, "alice", "wrong"))  # the 5th failure
    assert refused(login(client, "alice", PASSWORD))


def test_one_network_guessing_across_accounts_is_refused(client, staff, settings):
    settings.FVR_ADMIN_LOGIN_NETWORK_RATE = "8/15m"
    for n in range(8):
        assert not refused(login(client, f"guess{n}", "wrong"))
    assert refused(login(client, "bob", PASSWORD))
    assert login(client, "bob", PASSWORD, ip="198.51.100.9").status_code == 302


def test_counters_hold_neither_the_username_nor_the_address(client, staff):
    login(client, "alice", "wrong")
    rows = list(RateCounter.objects.values_list("scope", "client", "hits"))
    assert sorted(scope for scope, _client, _hits in rows) == ["login-ip", "login-user"]
    for _scope, client_key, hits in rows:
        assert hits == 1
        assert "alice" not in client_key
        assert "203.0.113" not in client_key

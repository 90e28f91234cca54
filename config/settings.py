"""fvr-study settings: one file, driven by the environment (see .env.example)."""

import os
import secrets
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable ("1", "true", "yes", "on" are true)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    """Read a comma-separated environment variable."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Keys that ship with fvr-study, in this file's history, .env.example, deploy/ and the docs: set
# as a key, any of them would let whoever reads the repository sign cookies or recompute
# pseudonyms. tests/test_settings.py collects the repository's values and checks each is refused.
SHIPPED_KEYS = frozenset(
    {
        "insecure-development-key-set-DJANGO_SECRET_KEY-in-production",
        "<50+ random characters>",
        "replace-with-50-random-characters",
    }
)
_KEY_HOWTO = (
    'generate one with `python -c "import secrets; print(secrets.token_urlsafe(50))"` and keep '
    "it out of the repository"
)


def key_problem(value: str) -> str | None:
    """Why ``value`` cannot be a key, or None: Django's own rule (check --deploy's W009) for a
    random secret key, and none of the values that ship with fvr-study."""
    if not value:
        return "is empty"
    if value in SHIPPED_KEYS or value.startswith(("django-insecure-", "insecure-")):
        return "is a placeholder that ships with fvr-study, so anyone can read it"
    if len(value) < 50 or len(set(value)) < 5:
        return "is too short to be random (50 characters or more, 5 or more distinct, are needed)"
    return None


def env_key(name: str, *, generate: bool) -> str:
    """A key from the environment; unset with ``generate``, the one kept in VAR_DIR."""
    value = os.environ.get(name, "")
    if not value and generate:
        return development_key(name)
    problem = key_problem(value)
    if problem:
        demo = " A local demo (DJANGO_DEBUG=1, not production) makes one in FVR_VAR_DIR."
        demo = "" if value else demo
        raise ImproperlyConfigured(
            f"{name} {problem}. Set it to a random value: {_KEY_HOWTO}.{demo}"
        )
    return value


def development_key(name: str) -> str:
    """A random key made on first use and kept in VAR_DIR/<name lower-cased> (mode 0600): the
    local demo's key belongs to this checkout, never to the repository."""
    path = VAR_DIR / f"dev-{name.lower().replace('_', '-')}"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name (mkstemp: mode 0600), then linked into place, which
        # fails if another process got there first: every process reads the same key.
        handle, temporary = tempfile.mkstemp(dir=VAR_DIR, prefix=f".{path.name}-")
        with os.fdopen(handle, "w") as file:
            file.write(secrets.token_urlsafe(50) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            Path(temporary).unlink()
    value = path.read_text().strip()
    problem = key_problem(value)
    if problem:
        raise ImproperlyConfigured(f"{path} {problem}: delete it and a new key is made.")
    return value


DEBUG = env_bool("DJANGO_DEBUG")
PRODUCTION = env_bool("DJANGO_PRODUCTION")
VAR_DIR = Path(os.environ.get("FVR_VAR_DIR", BASE_DIR / "var"))
# Signs sessions, CSRF tokens and the participant cookie (survey/browser.py). Required with DEBUG
# off, whatever DJANGO_PRODUCTION says; with DEBUG on and unset, made once in VAR_DIR.
SECRET_KEY = env_key("DJANGO_SECRET_KEY", generate=DEBUG and not PRODUCTION)
# Keys participant pseudonyms (survey.models.pseudonymise) and the rate limit's IP hashes
# (survey/ratelimit.py). Never derived from SECRET_KEY, so rotating that one leaves every
# pseudonym as it was; kept in a file of its own in development.
FVR_PSEUDONYM_KEY = env_key("FVR_PSEUDONYM_KEY", generate=DEBUG and not PRODUCTION)

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files, never from a CDN
    "django_tasks",
    "django_tasks_db",
    "survey",
    "reconstruction",
    "analysis",
]

# Long reconstruction jobs (reconstruction/tasks.py) wait in the database until a worker
# (`manage.py db_worker --queue-name reconstruction`, one per GPU) takes them.
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "reconstruction"],
    }
}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE", "0")),
        # A persistent connection cut by a database restart is replaced, not a 500. The check
        # costs a round trip (SELECT 1) at the first query of each request that reuses it.
        conn_health_checks=env_bool("DJANGO_CONN_HEALTH_CHECKS", True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several participants write at once: wait for the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", VAR_DIR / "static"))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = os.environ.get("DJANGO_MEDIA_URL", "/media/")
MEDIA_ROOT = Path(os.environ.get("DJANGO_MEDIA_ROOT", VAR_DIR / "media"))
# Serve uploaded media through Django (local demo only; production uses a web server or S3).
FVR_SERVE_MEDIA = env_bool("FVR_SERVE_MEDIA", DEBUG)
# Serve local media in production straight from the WSGI app (config/wsgi.py), before Django.
FVR_SERVE_MEDIA_WHITENOISE = env_bool("FVR_SERVE_MEDIA_WHITENOISE")

STORAGES = {
    # Local disk; URLs of files other than study images lead to the staff-only view.
    "default": {"BACKEND": "config.media.MediaStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
if os.environ.get("FVR_S3_BUCKET"):
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["FVR_S3_BUCKET"],
            "default_acl": "private",
            "querystring_auth": True,
            "querystring_expire": int(os.environ.get("FVR_S3_URL_SECONDS", "600")),
            "object_parameters": {"ServerSideEncryption": "AES256"},
        },
    }

SESSION_COOKIE_AGE = 60 * 60 * 24
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True

# Production hardening (HTTPS-only cookies, redirects, HSTS): on with DJANGO_PRODUCTION=1.
SECURE = env_bool("DJANGO_SECURE", PRODUCTION)
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = SECURE and env_bool("DJANGO_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000" if SECURE else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
SECURE_HSTS_PRELOAD = SECURE
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_PROXY") else None
)
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "fvr-study API",
    "DESCRIPTION": "Participant answers and staff-only exports.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"no_prolific_ids": {"()": "survey.redaction.ProlificIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # Django's own runserver request log, with Prolific IDs masked in the request line.
        "django.server": {
            "class": "logging.StreamHandler",
            "formatter": "django.server",
            "filters": ["no_prolific_ids"],
        },
    },
    "loggers": {
        "survey": {"handlers": ["console"], "level": os.environ.get("FVR_LOG_LEVEL", "INFO")},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
    },
}
# Error reports (the DEBUG page, mails to ADMINS) never show Prolific IDs (survey/redaction.py).
DEFAULT_EXCEPTION_REPORTER = "survey.redaction.ProlificSafeExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "survey.redaction.ProlificSafeExceptionReporterFilter"

# fvr-study's own settings.
# Where Prolific sends participants back to when they finish.
FVR_PROLIFIC_COMPLETE_URL = os.environ.get(
    "FVR_PROLIFIC_COMPLETE_URL", "https://app.prolific.com/submissions/complete"
)
# Prolific's REST API (approve, reject, bonus, return): the token is read from the environment
# only and never stored in the database.
FVR_PROLIFIC_TOKEN = os.environ.get("FVR_PROLIFIC_TOKEN", "")
FVR_PROLIFIC_API_URL = os.environ.get("FVR_PROLIFIC_API_URL", "https://api.prolific.com/api/v1/")
# Real face photos (identity-per-folder) for the demo and the tests; optional.
FVR_FACE_DATA = os.environ.get("FVR_FACE_DATA", "")
# Where public datasets fetched on demand (LFW for the demo) are kept.
FVR_DATA_CACHE = Path(
    os.environ.get("FVR_DATA_CACHE", Path.home() / ".cache" / "fvr-study" / "data")
).expanduser()
# Entry rate limit per client IP, shared by all workers through the database ("30/min",
# "100/10m"; "off" or 0: none). Unset or empty: 30/min in production, off otherwise.
FVR_ENTRY_RATE = os.environ.get("FVR_ENTRY_RATE") or ("30/min" if PRODUCTION else "off")
# Reverse proxies (IPs or networks) whose X-Forwarded-For names the client; empty: none.
FVR_TRUSTED_PROXIES = env_list("FVR_TRUSTED_PROXIES")
# Days after a participant finished that their raw Prolific ID is kept
# (`purge_participant_ids --expired` removes older ones; see DATA_PROTECTION.md).
try:
    FVR_RETENTION_DAYS = int(os.environ.get("FVR_RETENTION_DAYS", "90"))
except ValueError as error:
    raise ImproperlyConfigured("FVR_RETENTION_DAYS must be a whole number of days.") from error
if FVR_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("FVR_RETENTION_DAYS must be at least 1 day.")

# Admin login: failed attempts per username, and per client network, shared by all workers
# through the database (survey/adminlogin.py); over either, attempts are refused unchecked.
FVR_ADMIN_LOGIN_RATE = os.environ.get("FVR_ADMIN_LOGIN_RATE") or "5/15m"
FVR_ADMIN_LOGIN_NETWORK_RATE = os.environ.get("FVR_ADMIN_LOGIN_NETWORK_RATE") or "30/15m"


# Study integrity (issue 15; see DATA_PROTECTION.md): the largest Prolific bonus the tools pay
# (pence/cents), and how many refused-request rows are kept per participant and, for refusals
# before admission, per study and hour (beyond them, refusals are only logged, rate-limited).
def _env_positive_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name) or default)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} must be a whole number.") from error
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be at least 1.")
    return value


FVR_MAX_BONUS_PENCE = _env_positive_int("FVR_MAX_BONUS_PENCE", 1000)
FVR_REFUSALS_PER_PARTICIPANT = _env_positive_int("FVR_REFUSALS_PER_PARTICIPANT", 100)
FVR_ANONYMOUS_REFUSALS_PER_HOUR = _env_positive_int("FVR_ANONYMOUS_REFUSALS_PER_HOUR", 100)

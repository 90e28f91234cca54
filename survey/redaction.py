"""Keep Prolific identifiers out of error reports and request logs.

Prolific sends PROLIFIC_PID, STUDY_ID and SESSION_ID in the entry URL's query string. The entry
view redirects away from it at once, but the one request that carries them can still fail or be
logged. Django's error reports (the DEBUG page and the emails to ADMINS) go through
`ProlificSafeExceptionReporter` and `ProlificSafeExceptionReporterFilter` (settings
DEFAULT_EXCEPTION_REPORTER and DEFAULT_EXCEPTION_REPORTER_FILTER), and the development server's
request log through `ProlificIdLogFilter`.

This module imports no models: logging is configured before Django's apps are ready.
"""

import html
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

from django.http import HttpRequest
from django.utils.datastructures import MultiValueDict
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

PROLIFIC_PARAMETERS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
MASK = SafeExceptionReporterFilter.cleansed_substitute
PARAMETER_RE = re.compile(
    r"(?i)\b(" + "|".join(PROLIFIC_PARAMETERS) + r")(=|%3D)[^&\s\"'<>]*",
)
# Local variables that hold an identifier in the entry path (survey.services.participant_enter).
IDENTIFIER_NAME_RE = re.compile(r"(?i)pid|prolific|session|study_id|^sid$")
# Shorter values are not searched for in the rendered report: replacing every "ab" would garble
# it, and the parameters and variables that carry them are masked by name anyway.
MIN_SCRUB_LENGTH = 4


def prolific_parameters_scrub(text: str) -> str:
    """Mask the values of PROLIFIC_PID, STUDY_ID and SESSION_ID query parameters in `text`."""
    return PARAMETER_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def request_identifiers(request: HttpRequest | None) -> list[str]:
    """The identifier values this request carries in its query string (longest first)."""
    if request is None:
        return []
    values = {
        value
        for name in PROLIFIC_PARAMETERS
        for value in request.GET.getlist(name)
        if len(value) >= MIN_SCRUB_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def values_scrub(text: str, values: Iterable[str]) -> str:
    """Replace each value (as written, HTML-escaped or URL-encoded) in `text` with the mask."""
    for value in values:
        for form in {value, html.escape(value), quote(value, safe=""), quote_plus(value)}:
            text = text.replace(form, MASK)
    return text


class ProlificSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, plus: Prolific identifiers are masked, with DEBUG on or off."""

    def get_safe_request_meta(self, request: HttpRequest) -> dict[str, Any]:
        meta = super().get_safe_request_meta(request)
        return {
            key: prolific_parameters_scrub(value) if isinstance(value, str) else value
            for key, value in meta.items()
        }

    def cleanse_special_types(self, request: HttpRequest, value: Any) -> Any:
        if isinstance(value, HttpRequest):
            # Its repr shows the full path, query string included.
            return f"<{type(value).__name__}: {value.method} {value.path!r}>"
        value = super().cleanse_special_types(request, value)
        if isinstance(value, MultiValueDict) and any(k in value for k in PROLIFIC_PARAMETERS):
            value = value.copy()
            for key in PROLIFIC_PARAMETERS:
                if key in value:
                    value.setlist(key, [MASK] * len(value.getlist(key)))
        return value

    def get_traceback_frame_variables(self, request: HttpRequest, tb_frame: Any) -> list:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [
            (name, MASK if IDENTIFIER_NAME_RE.search(name) else value) for name, value in variables
        ]


class ProlificSafeExceptionReporter(ExceptionReporter):
    """Django's error report with the request's Prolific identifiers masked everywhere.

    The structured parts (URL, GET parameters, META, local variables) are masked by name; the
    rendered report is then searched for the identifier values themselves, which also catches
    them in exception messages (a database error quoting a row) and in any other repr.
    """

    def get_traceback_data(self) -> dict[str, Any]:
        data = super().get_traceback_data()
        if self.request is not None:
            data["request_GET_items"] = [
                (key, MASK if key in PROLIFIC_PARAMETERS else value)
                for key, value in self.request.GET.items()
            ]
            data["request_insecure_uri"] = prolific_parameters_scrub(data["request_insecure_uri"])
        return data

    def get_traceback_html(self) -> str:
        return values_scrub(super().get_traceback_html(), request_identifiers(self.request))

    def get_traceback_text(self) -> str:
        return values_scrub(super().get_traceback_text(), request_identifiers(self.request))


class ProlificIdLogFilter(logging.Filter):
    """Mask Prolific identifiers in a log record's request line (runserver's access log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = prolific_parameters_scrub(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                prolific_parameters_scrub(arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True

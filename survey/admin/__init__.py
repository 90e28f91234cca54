"""Django admin for researchers: studies and match sets, and participant data read-only.

One module per part (`studies`, `matchsets`, `participants`); importing this package registers
them all with the admin site, and the admin classes are importable from here.
"""

from django.contrib import admin

from survey.admin.matchsets import CandidateInline, MatchSetAdmin
from survey.admin.participants import (
    AssignmentAdmin,
    AuditEventAdmin,
    IntegrityFlagFilter,
    PageVisitAdmin,
    ParticipantAdmin,
    ReadOnlyAdmin,
    RefusedRequestAdmin,
    ResponseAdmin,
    ResponseInline,
)
from survey.admin.studies import StudyAdmin
from survey.adminlogin import ThrottledAdminLoginForm

admin.site.site_header = "fvr-study"
admin.site.site_title = "fvr-study admin"
admin.site.index_title = "Studies, match sets and participants"
# Failed passwords are limited per account and per network (survey/adminlogin.py).
admin.site.login_form = ThrottledAdminLoginForm

__all__ = [
    "AssignmentAdmin",
    "AuditEventAdmin",
    "CandidateInline",
    "IntegrityFlagFilter",
    "MatchSetAdmin",
    "PageVisitAdmin",
    "ParticipantAdmin",
    "ReadOnlyAdmin",
    "RefusedRequestAdmin",
    "ResponseAdmin",
    "ResponseInline",
    "StudyAdmin",
]

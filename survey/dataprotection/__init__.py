"""Data protection: the audit log, purging raw Prolific IDs, and erasing one person's data.

What is stored, where, for how long and how to delete it: DATA_PROTECTION.md. The audit log and
identifier hashing are in `audit`, the purge in `purge`, the erasure in `erasure`; all are
importable from here.
"""

from survey.dataprotection.audit import (
    BONUS_HASH_PREFIX,
    DataProtectionError,
    actor_of,
    audit_detail_scrubbed,
    audit_events_scrub,
    audit_record,
    bonus_submissions_hash,
    exports_audit,
    identifiers_scrubbed,
    study_get,
    submission_hash,
    submission_label,
)
from survey.dataprotection.erasure import DeleteResult, participant_delete
from survey.dataprotection.purge import PurgeResult, participant_ids_purge, retention_period

__all__ = [
    "BONUS_HASH_PREFIX",
    "DataProtectionError",
    "DeleteResult",
    "PurgeResult",
    "actor_of",
    "audit_detail_scrubbed",
    "audit_events_scrub",
    "audit_record",
    "bonus_submissions_hash",
    "exports_audit",
    "identifiers_scrubbed",
    "participant_delete",
    "participant_ids_purge",
    "retention_period",
    "study_get",
    "submission_hash",
    "submission_label",
]

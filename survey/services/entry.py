"""Arrival from Prolific: the IDs in the link checked, the participant admitted or resumed."""

import logging
import re
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from survey.models import Participant, Study, pseudonymise
from survey.services.locks import locked_study
from survey.services.refusals import EntryRefused, StudyUnavailable
from survey.services.timeouts import (
    overdue_time_out,
    overdue_time_out_now_and_then,
    participant_time_out_if_due,
)

logger = logging.getLogger(__name__)

# Prolific's IDs (PROLIFIC_PID, STUDY_ID, and SESSION_ID, the submission's id) are MongoDB
# ObjectIds: 24 hexadecimal characters, lower case in Prolific's links and API. Upper case is
# accepted and folded to lower case, so that a link whose case was changed on the way is still
# the same person (and never a second participation under a differently-cased PID).
PROLIFIC_ID_RE = re.compile(r"[0-9a-f]{24}", re.IGNORECASE)
# Studies with `accept_any_ids` (pilots, demos): made-up IDs of safe characters, taken as given.
MADE_UP_ID_RE = re.compile(r"[A-Za-z0-9_-]{6,64}")

# Integrity flags set at entry (Participant.integrity_flags).
REENTRY_SAME_BROWSER = "reentry_same_browser"
REENTRY_SAME_NETWORK = "reentry_same_network"
SESSION_TAKEN = (
    "This SESSION_ID is already in use by another participant. "
    "Please open the study again from your own Prolific link."
)


def _validated_prolific_id(name: str, value: str | None, *, any_ids: bool = False) -> str:
    """The ID as Prolific issues it, in lower case; with `any_ids` a made-up one as given."""
    if value is None or value == "":
        raise EntryRefused(
            f"The link is missing {name}. Please open the study again from Prolific."
        )
    if any_ids:
        if not MADE_UP_ID_RE.fullmatch(value):
            raise EntryRefused(
                f"{name} is not a valid identifier (6–64 letters, digits, '-' or '_'). "
                "Please open the study again from its link."
            )
        return value
    if not PROLIFIC_ID_RE.fullmatch(value):
        # The value itself is not repeated: it may be anything, and it may be a Prolific ID.
        found = (
            f"this one has {len(value)} characters"
            if len(value) != 24
            else "this one has other characters"
        )
        raise EntryRefused(
            f"{name} is not a valid Prolific ID: Prolific's IDs are 24 characters long, made "
            f"only of the digits 0–9 and the letters a–f ({found}). Please open the study "
            "again from Prolific, with the link exactly as Prolific gives it."
        )
    return value.lower()


def participant_enter(
    *,
    study: Study,
    prolific_pid: str | None,
    study_id: str | None,
    session_id: str | None,
    user_agent: str = "",
    client_hash: str = "",
    browser_participant_id: int | None = None,
) -> Participant:
    """Admit (or resume) the participant arriving from Prolific with these URL parameters.

    ``client_hash``: the keyed hash of the client's network (survey.ratelimit.client_key),
    never the address; ``browser_participant_id``: the participant this browser's signed
    cookie names for the study, if any. Both only serve to flag a re-entry under a new PID.
    """
    pid, session = _link_ids(study, prolific_pid, study_id, session_id)
    pseudonym = pseudonymise(pid)
    existing = (
        Participant.objects.filter(study=study, pseudonym=pseudonym).select_related("study").first()
    )
    if existing is not None:
        # Re-entry resumes (or explains, if finished or out of time).
        return participant_time_out_if_due(participant=existing)
    if study.status != Study.Status.OPEN:
        raise StudyUnavailable(
            "This study is not open at the moment. Please return it on Prolific; "
            "you will not be penalised."
        )
    try:
        with transaction.atomic():
            return _participant_admit(
                study,
                pid=pid,
                pseudonym=pseudonym,
                session=session,
                user_agent=user_agent,
                client_hash=client_hash,
                browser_participant_id=browser_participant_id,
            )
    except IntegrityError:
        # Another request won the race: the same person's (resume that participation), or
        # another PID's with the same session (which the session's constraint refused).
        arrived = Participant.objects.filter(study=study, pseudonym=pseudonym).first()
        if arrived is None:
            raise EntryRefused(SESSION_TAKEN) from None
        return arrived


def _link_ids(
    study: Study, prolific_pid: str | None, study_id: str | None, session_id: str | None
) -> tuple[str, str]:
    """The link's (PROLIFIC_PID, SESSION_ID), once all three IDs are valid for this study."""
    any_ids = study.accept_any_ids
    pid = _validated_prolific_id("PROLIFIC_PID", prolific_pid, any_ids=any_ids)
    sid = _validated_prolific_id("STUDY_ID", study_id, any_ids=any_ids)
    session = _validated_prolific_id("SESSION_ID", session_id, any_ids=any_ids)
    if study.prolific_study_id and sid.lower() != study.prolific_study_id.strip().lower():
        raise EntryRefused(
            "This link's STUDY_ID does not belong to this study. "
            "Please open the study again from Prolific."
        )
    return pid, session


def _participant_admit(
    study: Study,
    *,
    pid: str,
    pseudonym: str,
    session: str,
    user_agent: str,
    client_hash: str,
    browser_participant_id: int | None,
) -> Participant:
    """Create the participant in the caller's transaction; refused if the session is another
    participant's or the study is full.

    Arrivals do not wait for each other: one PID per study and one participant per session are
    the database's unique constraints (a race surfaces as IntegrityError, see
    participant_enter). Only a study with a maximum number of participants takes the study
    row's lock, so that places are counted one arrival at a time."""
    if study.max_participants is not None:
        study = locked_study(study.pk)
        arrived = Participant.objects.filter(study=study, pseudonym=pseudonym).first()
        if arrived is not None:
            return arrived  # The same person's other request got here first.
        _place_check(study, timezone.now())
    else:
        # Abandoned participations are marked as they are noticed (the place check does it
        # above), here now and then; those another request holds are left to it.
        overdue_time_out_now_and_then(study, timezone.now())
    session_users = Participant.objects.filter(study=study, session_id=session)
    if session_users.exclude(pseudonym=pseudonym).exists():
        # A Prolific session belongs to one person: a second PID with it is tampering. (The
        # same PID's other request, admitted meanwhile, makes the insert below fail instead,
        # and participant_enter resumes that participation.)
        raise EntryRefused(SESSION_TAKEN)
    flags = _reentry_flags(
        study, client_hash=client_hash, browser_participant_id=browser_participant_id
    )
    if flags:
        logger.warning("entry to %s flagged: %s", study.slug, ", ".join(flags))
    return Participant.objects.create(
        study=study,
        prolific_pid=pid,
        pseudonym=pseudonym,
        session_id=session,
        # PostgreSQL text cannot hold NUL: a forged header must not become a 500.
        user_agent=user_agent.replace("\x00", "")[:300],
        client_hash=client_hash[:32],
        integrity_flags=flags,
    )


def _place_check(study: Study, now: datetime) -> None:
    """Refuse an arrival when every place is taken; the caller holds the study row lock."""
    # Abandoned arrivals give their places back once their time is up (as on Prolific).
    overdue_time_out(study, now)
    if study.max_participants is not None:
        taken = study.participants.counted_for_balance(now=now).count()
        if taken >= study.max_participants:
            raise StudyUnavailable(
                "All places in this study have been taken. Please return it on "
                "Prolific; you will not be penalised."
            )


def _reentry_flags(
    study: Study, *, client_hash: str, browser_participant_id: int | None
) -> list[str]:
    """Why a new participant may be someone whose participation here ended uncompleted.

    Flagged, never refused: a browser or a network is not a person (a shared family computer,
    a household, a university or mobile network behind one address), and clearing cookies or
    changing network evades either check, so refusing would turn away honest people while
    stopping few of the others. The flag keeps the participant out of automatic approval and
    shows the researcher what to review against Prolific's records.
    """
    # Participations that ended without completing, whose time is up counting as timed out
    # (marked or not): coming back under a new PID after one of these is how a declined,
    # failed or timed-out participant would collect a completion code.
    ended = Participant.objects.released(study=study)
    flags = []
    if browser_participant_id is not None and ended.filter(pk=browser_participant_id).exists():
        flags.append(REENTRY_SAME_BROWSER)
    if client_hash and ended.filter(client_hash=client_hash).exists():
        flags.append(REENTRY_SAME_NETWORK)
    return flags

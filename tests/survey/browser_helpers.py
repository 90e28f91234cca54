"""Drive participants through the pages in a browser (Playwright), shared by browser tests."""

from survey import services
from survey.models import Participant
from tests.factories import STUDY_ID, id_for


def arrive(page, study, pid: str) -> Participant:
    """Open the study from a Prolific link, as Prolific sends participants (``pid`` names a
    Prolific-format ID, see tests.factories.id_for)."""
    session = id_for(study, f"SESSION{pid}")
    pid = id_for(study, pid)
    page.goto(
        f"/s/{study.slug}/?PROLIFIC_PID={pid}&STUDY_ID={study.prolific_study_id or STUDY_ID}"
        f"&SESSION_ID={session}"
    )
    assert "PROLIFIC_PID" not in page.url
    assert pid not in page.url
    return Participant.objects.get(study=study, prolific_pid=pid)


def fast_forward_to_questions(page, study, participant: Participant) -> None:
    """Consent, demographics and instructions through the services; then resume in the page."""
    services.participant_consent(participant=participant, consent=True)
    services.participant_demographics_save(
        participant=participant, gender="undisclosed", age_group="undisclosed"
    )
    services.participant_start_questions(participant=participant)
    page.goto(f"/s/{study.slug}/")  # no Prolific parameters: resumes from the session
    assert page.url.endswith("/question/1/")


def fill_answer(page, *, photos: list[int], confidence: str) -> None:
    for rank in photos:
        page.get_by_role("checkbox", name=f"Photo {rank}", exact=True).check()
    page.get_by_role("radio", name=confidence, exact=True).check()


def images_loaded(page) -> list[int]:
    """naturalWidth of every image on the page (0 = failed to load)."""
    return page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")

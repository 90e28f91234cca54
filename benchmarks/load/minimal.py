"""The least an answer needs, as a Django view on the same stack: the efficiency baseline.

Issue 19 asks for the app's CPU per question to stay within 2 × that of a view which does only
what storing an answer cannot do without: the participant identified from the browser's signed
cookie (survey/browser.py, no row read), the participant's row locked (as the real answer locks
it), one INSERT, one JSON reply. Same middleware (CSRF included), same database settings, same
gunicorn: only the work in the view differs. It lives here, in the harness, not in the product:
`benchmarks.load.settings` adds it to the project's URLs for the harness's gunicorn.
"""

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from survey.browser import browser_participants
from survey.models import Participant, RefusedRequest

REASON = "load-minimal"  # the rows it writes (survey.models.RefusedRequest), easy to tell apart


@require_POST
def minimal_answer(request: HttpRequest, slug: str) -> JsonResponse:
    """Lock the browser's participant in study ``slug``, insert one row, answer ``{"ok": true}``."""
    participant_id = browser_participants(request).get(slug)
    if participant_id is None:
        return JsonResponse({"ok": False}, status=403)
    with transaction.atomic():
        Participant.objects.select_for_update(of=("self",), no_key=True).only("pk").get(
            pk=participant_id
        )
        RefusedRequest.objects.create(participant_id=participant_id, reason=REASON)
    return JsonResponse({"ok": True})

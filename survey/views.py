"""Participant pages: short views over `survey.services`, in the order of `survey.flow`."""

from collections.abc import Callable
from functools import wraps
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from survey import services
from survey.browser import (
    browser_participant,
    browser_participants,
    browser_remember,
    refusal_recalled,
    refusal_remember,
)
from survey.faces import CandidateFace, candidate_faces
from survey.flow import progress, question_url, step_url
from survey.forms import AnswerForm, ConsentForm, DemographicsForm
from survey.models import Assignment, Confidence, Participant, Study
from survey.questions import questions_at
from survey.ratelimit import RateLimited, client_ip, client_key, entry_rate_check
from survey.studies import study_question_count

Step = Participant.Step
View = Callable[..., HttpResponse]


def error_page(request: HttpRequest, error: services.FlowError, *, study: Study | None = None):
    """Render a refusal as a page that says what happened and what to do."""
    return TemplateResponse(
        request,
        "survey/error.html",
        {"message": error.message, "study": study},
        status=error.status,
    )


def content_security_policy() -> str:
    """The participant pages' CSP: our own scripts and styles; images also from media storage."""
    images = ["'self'"]
    if urlsplit(settings.MEDIA_URL).netloc:
        images.append(origin(settings.MEDIA_URL))
    return "; ".join(
        [
            "default-src 'self'",
            f"img-src {' '.join(images)}",
            "script-src 'self'",
            "style-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            # The debrief's form ends in a redirect to Prolific, which form-action also covers.
            f"form-action 'self' {origin(settings.FVR_PROLIFIC_COMPLETE_URL)}",
        ]
    )


def origin(url: str) -> str:
    """scheme://host[:port] of a URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def participant_headers(view: View) -> View:
    """No caching of participant state, and a strict Content-Security-Policy."""

    @wraps(view)
    @never_cache
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response.headers.setdefault("Content-Security-Policy", content_security_policy())
        return response

    return wrapper


def participant_page(step: str) -> Callable[[View], View]:
    """Load the browser's participant; send them to their current step if this is not it."""

    def decorator(view: View) -> View:
        @wraps(view)
        @participant_headers
        def wrapper(request: HttpRequest, slug: str, **kwargs: object) -> HttpResponse:
            if request.method != "POST":
                return step_view(request, slug, browser_participant(request, slug), kwargs)
            # A submission is one transaction, begun by reading the participant under its
            # row lock (one query), which the services' writes then hold. A page it answers
            # with (a form's errors, a refusal) is a TemplateResponse, rendered once the
            # transaction has ended: nobody waits on the lock while it renders.
            with transaction.atomic():
                participant = browser_participant(request, slug, lock=True)
                return step_view(request, slug, participant, kwargs)

        def step_view(
            request: HttpRequest, slug: str, participant: Participant | None, kwargs: dict
        ) -> HttpResponse:
            if participant is None:
                study = get_object_or_404(Study, slug=slug)
                error = services.EntryRefused(
                    "We could not find your place in this study. Please open the study "
                    "again from your Prolific link.",
                    status=403,
                )
                return refusal_response(request, error, study)
            participant = services.participant_time_out_if_due(participant=participant)
            if participant.status == Participant.Status.TIMED_OUT:
                return timed_out_response(request, participant)
            if participant.step != step:
                if request.method == "POST":
                    log_stale_post(participant, f"a {step} page was submitted")
                return moved_on(request, participant)
            return view(request, participant, **kwargs)

        return wrapper

    return decorator


def timed_out_response(request: HttpRequest, participant: Participant) -> HttpResponse:
    """Every page of a timed-out participant: their time ran out, return the study on Prolific.
    A submission (an answer, a form) is refused, stores nothing and is logged."""
    error = services.TimedOut(participant.study)
    if request.method == "POST":
        services.refusal_log(error=error, study=participant.study, participant=participant)
    return refusal_response(request, error, participant.study)


def log_stale_post(participant: Participant, what: str) -> None:
    """Log a submission for a page the participant has left (double click, old tab)."""
    where = (
        f"question {participant.current_position}"
        if participant.step == Step.QUESTIONS
        else participant.get_step_display().lower()
    )
    error = services.AnswerRefused(f"Refused: {what} while the participant is at {where}.")
    services.refusal_log(error=error, study=participant.study, participant=participant)


def page_context(participant: Participant, questions: int | None = None, **extra: object) -> dict:
    """A participant page's context: the question count (the participant's own once decided,
    else the study's, kept by this process) for the progress bar and the page's text alike."""
    if questions is None:
        questions = participant.question_count or study_question_count(participant.study)
    done, total = progress(participant, questions)
    return {
        "participant": participant,
        "study": participant.study,
        "question_count": questions,
        "progress_done": done,
        "progress_total": total,
        "progress_percent": round(100 * done / total) if total else 100,
        **extra,
    }


def entry_client_hash(request: HttpRequest) -> str:
    """The keyed hash of the client's network (survey.ratelimit); '' when it has no address
    (a shared '' would make every such client look like one)."""
    ip = client_ip(request)
    return client_key(ip) if ip else ""


@participant_headers
@require_http_methods(["GET"])
def entry(request: HttpRequest, slug: str) -> HttpResponse:
    """Arrival from Prolific: admit, move the IDs out of the URL, go to the current step."""
    study = get_object_or_404(Study, slug=slug)
    try:
        entry_rate_check(request=request, study=study)
    except RateLimited as error:
        response = error_page(request, error, study=study)
        response["Retry-After"] = str(error.retry_after)
        return response
    params = request.GET
    if not any(key in params for key in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")):
        participant = browser_participant(request, study.slug)
        if participant is not None:
            return HttpResponseRedirect(step_url(participant))
        error = services.EntryRefused(
            "This page needs your Prolific details. Please open the study from Prolific."
        )
        return error_page(request, error, study=study)
    try:
        participant = services.participant_enter(
            study=study,
            prolific_pid=params.get("PROLIFIC_PID"),
            study_id=params.get("STUDY_ID"),
            session_id=params.get("SESSION_ID"),
            user_agent=request.headers.get("User-Agent", ""),
            # For re-entry flags only: the network's keyed hash (never the address, and behind
            # FVR_TRUSTED_PROXIES the client's), and whom this browser was before.
            client_hash=entry_client_hash(request),
            browser_participant_id=browser_participants(request).get(study.slug),
        )
    except services.FlowError as error:
        services.refusal_log(error=error, study=study)
        # Shown at a URL without the IDs, so that a reload or the browser's history does not
        # carry them again (as for an admitted participant).
        response = HttpResponseRedirect(reverse("survey:refused", kwargs={"slug": study.slug}))
        refusal_remember(response, slug=study.slug, status=error.status, message=error.message)
        return response
    response = HttpResponseRedirect(step_url(participant))
    browser_remember(request, response, slug=study.slug, participant_id=participant.pk)
    return response


@participant_headers
@require_http_methods(["GET"])
def refused(request: HttpRequest, slug: str) -> HttpResponse:
    """Why an entry from a Prolific link was refused (see entry); the IDs stay out of the URL."""
    study = get_object_or_404(Study, slug=slug)
    recalled = refusal_recalled(request)
    if recalled is None:
        error = services.EntryRefused(
            "Your entry to this study could not be completed. Please open the study again "
            "from your Prolific link."
        )
    else:
        status, message = recalled
        error = services.EntryRefused(message, status=status)
    return error_page(request, error, study=study)


@participant_page(Step.CONSENT)
def consent(request: HttpRequest, participant: Participant) -> HttpResponse:
    form = ConsentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        participant = services.participant_consent(
            participant=participant, consent=form.cleaned_data["decision"] == "agree"
        )
        return redirect(step_url(participant))
    services.page_visit_record(participant=participant, page=Step.CONSENT)
    status = 400 if request.method == "POST" else 200
    return TemplateResponse(
        request, "survey/consent.html", page_context(participant, form=form), status=status
    )


@participant_page(Step.DEMOGRAPHICS)
def demographics(request: HttpRequest, participant: Participant) -> HttpResponse:
    form = DemographicsForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        participant = services.participant_demographics_save(
            participant=participant, **form.cleaned_data
        )
        return redirect(step_url(participant))
    services.page_visit_record(participant=participant, page=Step.DEMOGRAPHICS)
    status = 400 if request.method == "POST" else 200
    context = page_context(participant, form=form)
    return TemplateResponse(request, "survey/demographics.html", context, status=status)


@participant_page(Step.INSTRUCTIONS)
def instructions(request: HttpRequest, participant: Participant) -> HttpResponse:
    if request.method == "POST":
        try:
            participant = services.participant_start_questions(participant=participant)
        except services.FlowError as error:
            services.refusal_log(error=error, study=participant.study, participant=participant)
            return error_page(request, error, study=participant.study)
        return redirect(step_url(participant))
    services.page_visit_record(participant=participant, page=Step.INSTRUCTIONS)
    return TemplateResponse(request, "survey/instructions.html", page_context(participant))


def _question_pair(participant: Participant, position: int) -> tuple[Assignment, Assignment | None]:
    """The question at ``position`` and the one after it (for preloading its images), with
    their match sets and question count: the participant's questions this process keeps
    (survey.questions; the candidates come from survey.faces)."""
    pair = questions_at(participant, position, position + 1)
    if position not in pair:
        raise Http404("No such question.")
    return pair[position], pair.get(position + 1)


def question_payload(
    participant: Participant, assignment: Assignment, following: Assignment | None
) -> dict:
    """What a question shows, as plain data: the page's template renders it, and the page's
    script (static/survey/survey.js) receives it as JSON with the previous answer's
    acknowledgement and shows it in place (one request per question)."""
    slug = participant.study.slug
    k = participant.study.k
    number, total = assignment.position, assignment.question_total
    shown = [assignment.match_set] + ([following.match_set] if following is not None else [])
    faces = candidate_faces(*shown)  # this question's and the next one's
    photos = shown_in_order(assignment, faces[0], k)
    preload = []
    if following is not None:
        # In the next question's display order: a rank-ordered list would tell its answer.
        preload = [following.match_set.query_image.url] + [
            face.url for face in shown_in_order(following, faces[1], k)
        ]
    attention = None
    if assignment.is_attention_check:
        attention = {
            "photo": assignment.photo_number(assignment.attention_rank, k),
            "label": Confidence(assignment.attention_confidence).label,
        }
    done, steps = progress(participant, total)
    return {
        "number": number,
        "total": total,
        "token": str(assignment.token),
        "url": question_url(slug, number),
        "next_url": question_url(slug, number + 1, total),
        "query_image": assignment.match_set.query_image.url,
        # Photo numbers and image URLs only: nothing here names a rank, a score or the truth.
        "candidates": [{"number": n, "url": face.url} for n, face in enumerate(photos, start=1)],
        "attention": attention,
        "preload": preload,
        "progress": {"done": done, "total": steps},
        "button": "Finish the questions" if number == total else "Next question",
    }


def shown_in_order(
    assignment: Assignment, faces: tuple[CandidateFace, ...], k: int
) -> list[CandidateFace]:
    """A question's candidates in the order its participant sees them (Photo 1 first)."""
    by_rank = {face.rank: face for face in faces}
    return [by_rank[rank] for rank in assignment.display_order(k)]


def wants_json(request: HttpRequest) -> bool:
    """The page's script asks for JSON (survey.js); a plain form post gets pages and redirects."""
    return "application/json" in request.headers.get("Accept", "")


def moved_on(
    request: HttpRequest,
    participant: Participant,
    notice: str = "",
    questions: dict[int, Assignment] | None = None,
) -> HttpResponse:
    """Send the participant to where they are now after a question's POST: a redirect to that
    page, or for the page's script that step's URL and, when it is a question, the question
    itself (marked as served), so that answering costs one request. ``questions``: the
    participant's questions by position, when the caller has read them."""
    if not wants_json(request):
        if notice:
            messages.info(request, notice)
        return HttpResponseRedirect(step_url(participant))
    shown = None
    if participant.step == Step.QUESTIONS:
        position = participant.current_position
        if questions is not None and position in questions:
            assignment, following = questions[position], questions.get(position + 1)
        else:
            assignment, following = _question_pair(participant, position)
        services.question_served(participant=participant)  # an answer's reply: done already
        shown = question_payload(participant, assignment, following)
    return JsonResponse({"next": step_url(participant), "question": shown, "notice": notice})


def refusal_response(request: HttpRequest, error: services.FlowError, study: Study) -> HttpResponse:
    """The one mapping of a refused participant action to HTTP: the error's status, with
    ``{"error": message, "code": reason}`` for the page's script, a page otherwise."""
    if wants_json(request):
        return JsonResponse({"error": error.message, "code": error.reason}, status=error.status)
    return error_page(request, error, study=study)


@participant_page(Step.QUESTIONS)
def question(request: HttpRequest, participant: Participant, position: int) -> HttpResponse:
    """One question per page (GET) and the one way to answer it (POST, see `answer`)."""
    if position != participant.current_position:
        if request.method == "POST":
            log_stale_post(participant, f"an answer to question {position} was submitted")
        notice = ""
        if position < participant.current_position:
            notice = f"You have already answered question {position}; your first answer is kept."
        return moved_on(request, participant, notice)
    if request.method == "POST":
        return answer(request, participant)
    assignment, following = _question_pair(participant, position)
    services.question_served(participant=participant)
    form = AnswerForm(initial={"question": assignment.token}, k=participant.study.k)
    return question_page(request, participant, form, assignment, following)


def answer(request: HttpRequest, participant: Participant) -> HttpResponse:
    """The answer endpoint: POST the question page's form (photo numbers, not ranks).

    By ``Accept``: a plain form post gets a redirect to where the participant is now (or the
    page again with the form's errors, 400); the page's script (``Accept: application/json``)
    gets ``{"next", "question", "notice"}``, the next question included. Refusals of either go
    through `refusal_response`. Stored once: a repeat is acknowledged as the first was."""
    study = participant.study
    # An oversized or malformed body never gets here: Django answers it (templates/400.html).
    form = AnswerForm(request.POST, k=study.k)
    if not form.is_valid():
        if wants_json(request):
            problems = "; ".join(str(e) for errors in form.errors.values() for e in errors)
            error = services.InvalidAnswer(f"The answer was not complete: {problems}")
            return refusal_response(request, error, study)
        assignment, following = _question_pair(participant, participant.current_position)
        return question_page(request, participant, form, assignment, following, status=400)
    # The answer names its question by token; the service checks it is this one.
    try:
        result = services.response_record(
            participant=participant,
            question=str(form.cleaned_data["question"]),
            selected_photos=form.cleaned_data["selected"],
            none_selected=form.cleaned_data["none_of_these"],
            confidence=form.cleaned_data["confidence"],
            shown_next=wants_json(request),
        )
    except services.FlowError as error:
        return refusal_response(request, error, study)
    return moved_on(request, result.participant, questions=result.questions)


def question_page(
    request: HttpRequest,
    participant: Participant,
    form: AnswerForm,
    assignment: Assignment,
    following: Assignment | None,
    *,
    status: int = 200,
) -> HttpResponse:
    """The question's page, with the form's values and errors when it was posted."""
    shown = question_payload(participant, assignment, following)
    selected = {str(v) for v in (form["selected"].value() or [])}
    context = page_context(
        participant,
        assignment.question_total,
        form=form,
        q=shown,
        candidates=[c | {"checked": str(c["number"]) in selected} for c in shown["candidates"]],
        confidence_choices=[(str(value), label) for value, label in Confidence.choices],
        confidence_value=str(form["confidence"].value() or ""),
        none_checked=bool(form["none_of_these"].value()),
        preload=shown["preload"],
        # The script's own checks say what the server would (survey.services, once).
        nothing_selected=services.NOTHING_SELECTED,
        confidence_missing=services.CONFIDENCE_MISSING,
    )
    return TemplateResponse(request, "survey/question.html", context, status=status)


@participant_page(Step.DEBRIEF)
def debrief(request: HttpRequest, participant: Participant) -> HttpResponse:
    if request.method == "POST":
        participant = services.participant_finish(participant=participant)
        # Straight back to Prolific with the code, where the done page would send them: one
        # request fewer for every participant who completes.
        return completed_redirect(participant) or redirect(step_url(participant))
    services.page_visit_record(participant=participant, page=Step.DEBRIEF)
    return TemplateResponse(request, "survey/debrief.html", page_context(participant))


def prolific_completion_url(code: str) -> str:
    return f"{settings.FVR_PROLIFIC_COMPLETE_URL}?{urlencode({'cc': code})}"


def completed_redirect(participant: Participant) -> HttpResponse | None:
    """Back to Prolific with the completion code, for a participant who completed."""
    if participant.status != Participant.Status.COMPLETED:
        return None
    return HttpResponseRedirect(prolific_completion_url(participant.completion_code))


@participant_page(Step.DONE)
def done(request: HttpRequest, participant: Participant) -> HttpResponse:
    """The end: completed participants go straight back to Prolific with their code; the
    others read why the study ended for them and follow the link with theirs."""
    back = completed_redirect(participant)
    if back is not None:
        return back
    url = prolific_completion_url(participant.completion_code)
    return TemplateResponse(
        request, "survey/done.html", page_context(participant, prolific_url=url)
    )

// Progressive enhancement for participant pages; every page works without it.
(function () {
  "use strict";
  var MAX_WAIT_SECONDS = 10;
  var REQUEST_TIMEOUT_MS = 20000;
  // A page restored from the back-forward cache shows stale state (an answered question, a
  // "Saving…" button); the server knows the current step, so ask it again.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) { window.location.reload(); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form").forEach(function (form) {
      // One submission per page load: a double click never sends the answer twice.
      form.addEventListener("submit", function (event) {
        if (form.dataset.submitting === "1") { event.preventDefault(); return; }
        var isQuestion = form.classList.contains("question");
        var problem = isQuestion ? checkAnswer(form) : "";
        if (problem) {
          event.preventDefault();
          say(form, problem);
          return;
        }
        form.dataset.submitting = "1";
        var button = form.querySelector("button[type=submit]");
        if (button) { button.disabled = true; button.textContent = "Saving…"; }
        if (isQuestion && window.fetch && form.dataset.next) {
          event.preventDefault();
          sendAnswer(form);
        }
      });
    });
    var question = document.querySelector("form.question");
    if (question) { exclusiveNone(question); }
  });

  function say(form, text) {
    var status = form.querySelector(".status");
    if (status) { status.textContent = text; }
  }

  function checkAnswer(form) {
    var picked = form.querySelectorAll("input[name=selected]:checked").length;
    var none = form.querySelector("input[name=none_of_these]").checked;
    if (!picked && !none) { return "Select at least one photo, or “None of these”."; }
    if (!form.querySelector("input[name=confidence]:checked")) { return "Please rate how confident you are."; }
    return "";
  }

  // Send the answer in the background and keep it until the server acknowledges it: offline or
  // on a server error, retry after 1, 2, 4, 8, then every 10 s (at once when the browser is back
  // online), telling the participant what is happening. The server keeps the first answer to a
  // question, so a retry of an answer that did arrive changes nothing.
  function sendAnswer(form) {
    var body = new URLSearchParams(new FormData(form));
    var fields = form.querySelectorAll("fieldset");
    var failures = 0, timer = null, ticker = null, inFlight = false, done = false;
    // The answer on screen is the answer being sent: no changes until it is acknowledged.
    fields.forEach(function (f) { f.disabled = true; });

    function attempt() {
      if (done || inFlight) { return; }
      clearTimeout(timer); clearInterval(ticker);
      inFlight = true;
      if (failures) { say(form, "Sending your answer again…"); }
      // A connection that silently died would leave the request hanging: give up on it and
      // retry (harmless if it did arrive).
      var abort = window.AbortController ? new AbortController() : null;
      var hung = abort ? setTimeout(function () { abort.abort(); }, REQUEST_TIMEOUT_MS) : null;
      fetch(form.action || window.location.href, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        redirect: "manual",
        headers: { "X-Requested-With": "fetch" },
        signal: abort ? abort.signal : undefined
      }).then(function (response) {
        clearTimeout(hung);
        inFlight = false;
        if (response.type === "opaqueredirect") {
          // Acknowledged: the answer is stored (now or by an earlier try). Go where an accepted
          // answer leads; the server redirects from there if the participant belongs elsewhere.
          finish();
          window.location.assign(form.dataset.next);
        } else if (response.status >= 500) {
          retryLater("The study's server had a problem — your answer is kept and will be sent " +
            "again");
        } else {
          // The server refused the answer (a form error, a page left): let it show its page.
          finish();
          fields.forEach(function (f) { f.disabled = false; });
          HTMLFormElement.prototype.submit.call(form);
        }
      }, function () {
        clearTimeout(hung);
        inFlight = false;
        retryLater("You seem to be offline — your answer is kept and will be sent when the " +
          "connection returns");
      });
    }

    function retryLater(message) {
      failures += 1;
      var wait = Math.min(Math.pow(2, failures - 1), MAX_WAIT_SECONDS);
      var left = wait;
      var show = function () { say(form, message + " (retrying in " + left + " s)."); };
      show();
      ticker = setInterval(function () { left = Math.max(left - 1, 0); show(); }, 1000);
      timer = setTimeout(attempt, wait * 1000);
    }

    function finish() {
      done = true;
      clearTimeout(timer); clearInterval(ticker);
      window.removeEventListener("online", attempt);
    }

    window.addEventListener("online", attempt);
    attempt();
  }

  // "None of these" and photo choices exclude each other.
  function exclusiveNone(form) {
    var none = form.querySelector("input[name=none_of_these]");
    var photos = form.querySelectorAll("input[name=selected]");
    none.addEventListener("change", function () {
      if (none.checked) { photos.forEach(function (p) { p.checked = false; }); }
    });
    photos.forEach(function (p) {
      p.addEventListener("change", function () { if (p.checked) { none.checked = false; } });
    });
  }
})();

// Progressive enhancement for participant pages; every page works without it.
(function () {
  "use strict";
  var MAX_WAIT_SECONDS = 10;
  var REQUEST_TIMEOUT_MS = 20000;
  var IMAGE_WAIT_MS = 5000;  // the longest the next question waits for its images to decode
  // A page restored from the back-forward cache shows stale state (an answered question, a
  // "Saving…" button); the server knows the current step, so ask it again.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) { window.location.reload(); }
  });
  // Back or Forward between questions shown in place: load that URL's page, which the server
  // answers with the current question (an answered one is never shown again). A change of the
  // fragment only (the "Skip to content" link) stays on the page.
  var shownPath = window.location.pathname;
  window.addEventListener("popstate", function () {
    if (window.location.pathname !== shownPath) { window.location.reload(); }
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
    // The server's own words (survey.services), written into the form by its template.
    if (!picked && !none) { return form.dataset.nothingSelected; }
    if (!form.querySelector("input[name=confidence]:checked")) { return form.dataset.confidenceMissing; }
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
        headers: { "Accept": "application/json", "X-Requested-With": "fetch" },
        signal: abort ? abort.signal : undefined
      }).then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (response.status >= 500 || type.indexOf("application/json") !== 0) {
          return { response: response };
        }
        // A body cut off on the way counts as a lost connection (retried below).
        return response.json().then(function (data) { return { response: response, data: data }; });
      }).then(function (reply) {
        clearTimeout(hung);
        inFlight = false;
        var response = reply.response, data = reply.data;
        if (response.status >= 500) {
          retryLater("The study's server had a problem — your answer is kept and will be sent " +
            "again");
          return;
        }
        finish();
        if (data && response.ok) {
          // Acknowledged (now or by an earlier try); the reply says where the participant is
          // and, when that is a question, brings it.
          if (data.question) { showQuestion(form, data.question, data.notice); }
          else { window.location.assign(data.next); }
        } else if (data) {
          // Refused (a question left in another tab, say): say why; a reload shows the way on.
          fields.forEach(function (f) { f.disabled = false; });
          unlock(form);
          say(form, data.error + " Reload the page to continue.");
        } else if (response.type === "opaqueredirect") {
          window.location.assign(form.dataset.next);
        } else {
          // Not the page's script's business (a page refusing a lost session): let the server
          // show its page.
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

  function unlock(form) {
    form.dataset.submitting = "0";
    var button = form.querySelector("button[type=submit]");
    if (button) { button.disabled = false; }
  }

  // Show the next question in place of the answered one: its images are fetched (usually from
  // the cache: the page prefetched them) and decoded first, so that no half-loaded question
  // is shown; then the controls are reset, the URL, title, heading and progress updated, and
  // the following question's images prefetched. Any failure falls back to loading its page.
  function showQuestion(form, q, notice) {
    var shown = [form.querySelector(".query img")].concat(
      Array.prototype.slice.call(form.querySelectorAll(".candidate img")));
    var urls = [q.query_image].concat(q.candidates.map(function (c) { return c.url; }));
    if (shown.length !== urls.length) { window.location.assign(q.url); return; }
    var fresh = urls.map(function (url, i) {
      var img = new Image();
      ["alt", "width", "height"].forEach(function (a) { img.setAttribute(a, shown[i].getAttribute(a)); });
      img.src = url;
      return img;
    });
    var decoded = Promise.all(fresh.map(function (img) {
      return img.decode ? img.decode().catch(function () {}) : null;
    }));
    var patience = new Promise(function (resolve) { setTimeout(resolve, IMAGE_WAIT_MS); });
    Promise.race([decoded, patience]).then(function () {
      try {
        swapQuestion(form, q, notice, shown, fresh);
      } catch (error) {
        window.location.assign(q.url);
      }
    });
  }

  function swapQuestion(form, q, notice, shown, fresh) {
    shown.forEach(function (img, i) { img.replaceWith(fresh[i]); });
    form.querySelectorAll("input[name=selected]").forEach(function (input, i) {
      input.value = String(q.candidates[i].number);
      input.checked = false;
    });
    form.querySelectorAll("input[name=none_of_these], input[name=confidence]").forEach(
      function (input) { input.checked = false; });
    form.querySelector("input[name=question]").value = q.token;
    form.dataset.question = q.token;
    form.dataset.next = q.next_url;
    form.querySelectorAll("fieldset").forEach(function (f) { f.disabled = false; });
    var button = form.querySelector("button[type=submit]");
    button.textContent = q.button;
    unlock(form);
    say(form, "");

    var heading = document.querySelector("main h1");
    var of = document.createElement("span");
    of.className = "muted";
    of.textContent = "of " + q.total;
    heading.replaceChildren("Question " + q.number + " ", of);
    document.title = "Question " + q.number + " of " + q.total;
    var bar = document.querySelector("progress.progress");
    if (bar) {
      bar.max = q.progress.total;
      bar.value = q.progress.done;
      bar.textContent = Math.round(100 * q.progress.done / q.progress.total) + "%";
    }
    var old = document.getElementById("attention");
    if (old) { old.remove(); }
    if (q.attention) { heading.after(attentionNote(q.attention)); }
    document.querySelectorAll("main .messages, main .form-errors").forEach(function (e) { e.remove(); });
    if (notice) {
      var list = document.createElement("ul");
      list.className = "messages";
      list.setAttribute("role", "status");
      var item = document.createElement("li");
      item.textContent = notice;
      list.appendChild(item);
      document.querySelector("main").prepend(list);
    }
    document.querySelectorAll("link[rel=prefetch]").forEach(function (l) { l.remove(); });
    q.preload.forEach(function (url) {
      var link = document.createElement("link");
      link.rel = "prefetch";
      link.as = "image";
      link.href = url;
      document.head.appendChild(link);
    });
    // A URL of its own: a reload shows this question, and Back reaches the answered one,
    // whose page sends the participant on (see the popstate listener).
    window.history.pushState({ question: q.number }, "", q.url);
    shownPath = window.location.pathname;
    window.scrollTo(0, 0);
    document.getElementById("main").focus({ preventScroll: true });
  }

  function attentionNote(attention) {
    var note = document.createElement("p");
    note.className = "instruction";
    note.id = "attention";
    var strong = function (text) {
      var s = document.createElement("strong");
      s.textContent = text;
      return s;
    };
    note.append(strong("Please read carefully:"), " for this question, select ",
      strong("photo " + attention.photo), " only and answer ", strong("“" + attention.label + "”"),
      ".");
    return note;
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

// Progressive enhancement for participant pages; every page works without it.
(function () {
  "use strict";
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
        var problem = form.classList.contains("question") ? checkAnswer(form) : "";
        if (problem) {
          event.preventDefault();
          var status = form.querySelector(".status");
          if (status) { status.textContent = problem; }
          return;
        }
        form.dataset.submitting = "1";
        var button = form.querySelector("button[type=submit]");
        if (button) { button.disabled = true; button.textContent = "Saving…"; }
      });
    });
    var question = document.querySelector("form.question");
    if (question) { exclusiveNone(question); }
  });

  function checkAnswer(form) {
    var picked = form.querySelectorAll("input[name=selected]:checked").length;
    var none = form.querySelector("input[name=none_of_these]").checked;
    if (!picked && !none) { return "Select at least one photo, or “None of these”."; }
    if (!form.querySelector("input[name=confidence]:checked")) { return "Please rate how confident you are."; }
    return "";
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

// Composer keys, composer state while streaming, autoscroll. Everything else is htmx.
(function () {
  "use strict";
  let stickToBottom = true;

  function messages() { return document.getElementById("messages"); }
  function streaming() {
    const status = document.getElementById("stream-status");
    return status && status.dataset.state === "streaming";
  }
  function syncComposer() {
    const fieldset = document.getElementById("composer-fieldset");
    if (fieldset) fieldset.disabled = streaming();
    if (!streaming()) {
      const textarea = document.querySelector("#composer textarea");
      if (textarea && document.activeElement === document.body) textarea.focus();
    }
  }
  function scrollToEnd() {
    if (stickToBottom) window.scrollTo(0, document.body.scrollHeight);
  }

  // Autoscroll pauses when the user scrolls up, and resumes at the bottom.
  window.addEventListener("scroll", function () {
    stickToBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
  }, { passive: true });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && streaming()) {
      const stop = document.getElementById("stop-form");
      if (stop) { event.preventDefault(); stop.requestSubmit(); }
      return;
    }
    const target = event.target;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && target.matches("#composer textarea")) {
      event.preventDefault();
      if (!streaming() && target.value.trim()) target.form.requestSubmit();
    }
  });

  document.addEventListener("htmx:wsAfterSend", function (event) {
    const form = event.detail && event.detail.elt;
    if (form && form.id === "composer") form.reset();
    stickToBottom = true;
  });
  document.addEventListener("htmx:wsAfterMessage", function () { syncComposer(); scrollToEnd(); });
  document.addEventListener("htmx:wsOpen", function () {
    const el = document.getElementById("connection");
    if (el) el.textContent = "";
  });
  document.addEventListener("htmx:wsClose", function () {
    const el = document.getElementById("connection");
    if (el) el.textContent = "connection lost — reconnecting…";
  });
  document.addEventListener("DOMContentLoaded", function () { syncComposer(); scrollToEnd(); });

  // Panel helpers: pretty-print a JSON field; close the code/inspector dialog.
  document.addEventListener("click", function (event) {
    const format = event.target.closest(".format-json");
    if (format) {
      const textarea = document.getElementById(format.dataset.formatFor);
      if (textarea && window.HexgridEditor && !window.HexgridEditor.format(textarea)) {
        format.textContent = "Invalid JSON";
        setTimeout(function () { format.textContent = "Format"; }, 1500);
      }
    }
    if (event.target.closest(".close-dialog")) {
      const dialog = document.getElementById("dialog");
      if (dialog) dialog.innerHTML = "";
    }
  });
})();

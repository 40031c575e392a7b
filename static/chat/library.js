// The prompt library's behaviour beyond htmx (delegated listeners only: CSP script-src 'self').
// - After Use a prompt added its messages, Run goes over the conversation's socket like any run
//   (chat.js adds the settings panel's values to the frame).
// - A test set's table: one new row at a time; Cancel drops the unsaved row.
(function () {
  "use strict";

  document.addEventListener("prompt-used", function (event) {
    if (!event.detail || !event.detail.run) return;
    const run = document.getElementById("run-form");
    if (run) run.requestSubmit();
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    const elt = event.detail && event.detail.elt;
    if (!elt || elt.id !== "add-row") return;
    const open = document.getElementById("case-new");
    if (open) {
      event.preventDefault();
      const first = open.querySelector("textarea");
      if (first) first.focus();
    }
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    const row = document.getElementById("case-new");
    if (row && event.target && (event.target === row || event.target.id === "case-rows")) {
      const first = row.querySelector("textarea");
      if (first) first.focus();
    }
  });

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-remove-row]");
    if (!button) return;
    const row = document.getElementById(button.dataset.removeRow);
    if (row) row.remove();
    const add = document.getElementById("add-row");
    if (add) add.focus();
  });
})();

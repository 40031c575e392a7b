// A comparison's page: the page streams while any pane does. Each pane's final fragment marks that
// pane idle; once none streams, the page's status turns idle (before chat.js reads it: capture phase,
// so the composer comes back and Esc stops nothing).
(function () {
  "use strict";
  function sync() {
    const status = document.getElementById("stream-status");
    if (!status || !document.querySelector(".compare")) return;
    const any = document.querySelector(".pane-state[data-state='streaming']") !== null;
    if (!any && status.dataset.state !== "idle") {
      status.dataset.state = "idle";
      status.textContent = "";
    }
  }
  document.addEventListener("htmx:wsAfterMessage", sync, true);
  // Replay on… saved the request: it starts once this page's socket is open (and only once).
  document.addEventListener("htmx:wsOpen", function () {
    const replay = document.getElementById("replay-start");
    if (replay) { replay.requestSubmit(); replay.remove(); }
  });
  document.addEventListener("DOMContentLoaded", sync);
  // Answers drawn by the socket are the same for every viewer and carry their owner's actions
  // (data-owner-only); a read-only page drops them (the views refuse them anyway).
  function dropOwnerOnly(root) {
    if (!document.querySelector(".compare.read-only")) return;
    const scope = root && root.querySelectorAll ? root : document;
    if (scope.matches && scope.matches("[data-owner-only]")) { scope.remove(); return; }
    scope.querySelectorAll("[data-owner-only]").forEach(function (el) { el.remove(); });
  }
  document.addEventListener("htmx:load", function (e) { dropOwnerOnly(e.target); });
  document.addEventListener("htmx:wsAfterMessage", function () { dropOwnerOnly(document); });
})();

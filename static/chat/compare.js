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
})();

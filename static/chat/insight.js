// Server insight on the conversation page (issue 17): the token meter follows the composer and the
// settings (debounced: typing never waits for it; a newer request replaces an older one, hx-sync),
// "What the model sees" loads when opened, and the endpoint's load indicator follows the picker.
(function () {
  "use strict";
  const METER_DELAY = 600; // ms after the last keystroke or change
  let meterTimer = null;

  function byId(id) { return document.getElementById(id); }
  function trigger(el, name) { if (el && window.htmx) window.htmx.trigger(el, name); }

  function refreshMeterSoon() {
    clearTimeout(meterTimer);
    meterTimer = setTimeout(function () { trigger(byId("token-meter"), "refresh"); }, METER_DELAY);
  }

  document.addEventListener("input", function (event) {
    if (event.target.closest && event.target.closest("#settings-panel, #composer")) refreshMeterSoon();
  });
  document.addEventListener("change", function (event) {
    if (event.target.closest && event.target.closest("#settings-panel")) refreshMeterSoon();
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    const target = event.target;
    if (target.id === "messages") refreshMeterSoon();
    if (target.id === "settings-panel") {
      refreshMeterSoon();
      trigger(byId("endpoint-load"), "refresh"); // the picker may show another endpoint now
    }
  });
  // A sent message leaves the composer empty (chat.js clears it): count the next request again.
  document.addEventListener("htmx:wsAfterMessage", refreshMeterSoon);

  // The meter says when the request cannot fit; Send shows it too (it can still be sent).
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target.id !== "token-meter") return;
    const meter = event.target.querySelector(".meter");
    const send = byId("send-button");
    if (send) send.classList.toggle("wont-fit", !!meter && meter.dataset.fits === "false");
  });

  document.addEventListener("click", function (event) {
    const opener = event.target.closest && event.target.closest("[data-dialog='prompt-dialog']");
    if (opener) trigger(byId("prompt-view"), "refresh");
  });
})();

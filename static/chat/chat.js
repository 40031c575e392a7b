// Composer keys, composer state while streaming, autoscroll, the settings panel's morph swaps and
// the settings every frame carries, the next-request preview and copy buttons. Everything else is htmx.
(function () {
  "use strict";
  let stickToBottom = true;
  let pendingSend = null; // the composer's text, sent and not yet accepted or refused by the server
  let revealInvalid = false; // after a refusal: open, scroll to and focus the first invalid field

  // A number input holding text that is not a number has the value "": sent as this instead, so the
  // server refuses it by name rather than taking it for "unset".
  const NOT_A_NUMBER = "not a number";

  function messages() { return document.getElementById("messages"); }
  function panel() { return document.getElementById("settings-panel"); }
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
    if (event.key === "Escape" && streaming() && !document.querySelector("dialog[open]")) {
      const stop = document.getElementById("stop-form");
      if (stop) { event.preventDefault(); stop.requestSubmit(); }
      return;
    }
    const target = event.target;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && target.matches("#composer textarea")) {
      event.preventDefault();
      if (!streaming() && !pendingSend && target.value.trim()) target.form.requestSubmit();
    }
  });

  // --- the settings every frame carries -------------------------------------------------------

  function badNumbers(root) {
    return Array.from(root.querySelectorAll("input[type=number]")).filter(function (input) {
      return input.name && input.validity.badInput;
    });
  }

  // The panel's values as shown, URL-encoded: the request is built from exactly these.
  function panelSettings() {
    const form = panel();
    if (!form) return null;
    const data = new URLSearchParams(new FormData(form));
    badNumbers(form).forEach(function (input) { data.set(input.name, NOT_A_NUMBER); });
    return data.toString();
  }

  document.addEventListener("htmx:wsConfigSend", function (event) {
    const params = event.detail.parameters;
    if (!params || params.action === "stop" || params.action === "resync") return;
    if (event.detail.elt && event.detail.elt.id === "composer" && pendingSend) {
      // The last send is not answered yet: a second one would go out twice.
      event.preventDefault();
      if (event.detail.triggeringEvent) event.detail.triggeringEvent.preventDefault();
      return;
    }
    const settings = panelSettings();
    if (settings !== null) params.settings = settings;
  });

  // Autosaves and the preview post the same values: a number that is not one is refused by name.
  document.addEventListener("htmx:configRequest", function (event) {
    const form = panel();
    const params = event.detail.parameters;
    if (!form || !params || typeof params.has !== "function") return;
    badNumbers(form).forEach(function (input) {
      if (params.has(input.name)) params.set(input.name, NOT_A_NUMBER);
    });
  });

  // --- sends: keep the typed text until the server accepts it ---------------------------------

  document.addEventListener("htmx:wsAfterSend", function (event) {
    const form = event.detail && event.detail.elt;
    if (form && form.id === "composer") {
      const textarea = form.querySelector("textarea[name=content]");
      pendingSend = { text: textarea ? textarea.value : "" };
    }
    stickToBottom = true;
  });

  function frameError() {
    const error = document.getElementById("frame-error");
    return error && !error.dataset.seen && error.textContent.trim() ? error : null;
  }

  // After each socket message: a refusal keeps the text and shows why; the opening fragments of
  // an accepted send (the status turns streaming) clear the composer.
  function settleSend() {
    const error = frameError();
    if (error) {
      error.dataset.seen = "1"; // the element is replaced by the next refusal or cleared on success
      pendingSend = null;
      if (/^Not sent: .* is invalid/.test(error.textContent.trim())) showInvalidSettings();
      return;
    }
    if (pendingSend && streaming()) {
      // Accepted: the new user message is the last one shown (unless another tab's run started).
      const textarea = document.querySelector("#composer textarea[name=content]");
      const shown = document.querySelectorAll("#messages .message.user .content");
      const last = shown.length ? shown[shown.length - 1].textContent.trim() : null;
      if (textarea && textarea.value === pendingSend.text && last === pendingSend.text.trim()) textarea.value = "";
      pendingSend = null;
    }
  }

  document.addEventListener("htmx:wsAfterMessage", function () {
    settleSend();
    syncComposer();
    scrollToEnd();
    refreshNextRequestSoon();
  });
  document.addEventListener("htmx:wsOpen", function () {
    const el = document.getElementById("connection");
    if (el) el.textContent = "";
  });
  document.addEventListener("htmx:wsClose", function () {
    const el = document.getElementById("connection");
    if (el) el.textContent = "connection lost — reconnecting…";
    pendingSend = null;
  });
  document.addEventListener("DOMContentLoaded", function () { syncComposer(); scrollToEnd(); });

  // --- the settings panel: morph swaps, invalid fields ----------------------------------------

  // idiomorph's htmx extension morphs the panel (hx-swap="morph"; a config in the attribute would
  // need eval, which the CSP forbids, so it is set here). The focused field keeps the value being
  // typed, <details> keep the user's open or closed state, and the CodeMirror editors (DOM next to
  // their hidden textarea, cm-json.min.js) survive and show what the server returned unless the
  // user is typing in them.
  function isEditorOf(node) {
    const textarea = node.previousElementSibling;
    return !!(textarea && textarea.editorView && textarea.editorView.dom === node);
  }
  function syncEditor(textarea) {
    const view = textarea.editorView;
    const doc = view.state.doc.toString();
    if (view.hasFocus) {
      textarea.value = doc; // the text being typed wins
    } else if (textarea.value !== doc) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: textarea.value } });
    }
  }
  function configureMorph() {
    if (!window.Idiomorph) return;
    const defaults = window.Idiomorph.defaults;
    defaults.ignoreActiveValue = true;
    defaults.callbacks.beforeAttributeUpdated = function (name, node) {
      if (name === "open" && node.tagName === "DETAILS") return false;
      if (node.editorView && (name === "hidden" || name === "data-editor-attached")) return false;
      return true;
    };
    defaults.callbacks.beforeNodeRemoved = function (node) { return !isEditorOf(node); };
    defaults.callbacks.afterNodeMorphed = function (node) { if (node.editorView) syncEditor(node); };
  }
  configureMorph(); // idiomorph-ext.min.js is loaded (deferred) before this file

  function focusTarget(field) {
    const editor = field.querySelector(".cm-content");
    if (editor) return editor;
    return field.querySelector("input:not([type=hidden]), select, textarea:not([hidden])");
  }

  // A send was refused for an invalid setting: save the panel as shown so its errors render.
  function showInvalidSettings() {
    const form = panel();
    if (!form || !window.htmx) return;
    revealInvalid = true;
    window.htmx.trigger(form, "revalidate");
  }

  function afterPanelSwap(form) {
    const invalid = form.querySelectorAll(".field.invalid");
    invalid.forEach(function (field) {
      const group = field.closest("details");
      if (group) group.open = true; // an error is never hidden in a closed group
    });
    if (revealInvalid && invalid.length) {
      const target = focusTarget(invalid[0]);
      invalid[0].scrollIntoView({ block: "center" });
      if (target) target.focus({ preventScroll: true });
    }
    revealInvalid = false;
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    const target = event.target;
    if (target.id === "settings-panel") { afterPanelSwap(target); refreshNextRequestSoon(); }
    if (target.id === "messages") refreshNextRequestSoon();
  });

  // --- the next request: a dialog, kept up to date while open ---------------------------------

  let refreshTimer = null;
  let opener = null;

  function nextRequestDialog() { return document.getElementById("next-request-dialog"); }
  function refreshNextRequest() {
    const view = document.getElementById("next-request-view");
    if (view && window.htmx) window.htmx.trigger(view, "refresh");
  }
  function refreshNextRequestSoon() {
    const dialog = nextRequestDialog();
    if (!dialog || !dialog.open) return;
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refreshNextRequest, 250);
  }

  document.addEventListener("input", function (event) {
    if (event.target.closest("#settings-panel, #composer")) refreshNextRequestSoon();
  });
  document.addEventListener("change", function (event) {
    if (event.target.closest("#settings-panel")) refreshNextRequestSoon();
  });
  document.addEventListener("close", function (event) {
    if (event.target.id === "next-request-dialog" && opener) {
      clearTimeout(refreshTimer);
      opener.focus();
      opener = null;
    }
  }, true);

  // --- clicks: the preview, copy buttons, JSON formatting, closing dialogs ------------------------

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) { // plain http on another host: the old way
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      (document.querySelector("dialog[open]") || document.body).appendChild(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      if (ok) resolve(); else reject(new Error("copy refused"));
    });
  }
  function flash(button, text) {
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = text;
    clearTimeout(button.flashTimer);
    button.flashTimer = setTimeout(function () { button.textContent = label; }, 1500);
  }

  document.addEventListener("click", function (event) {
    const preview = event.target.closest("#next-request-button");
    if (preview) {
      const dialog = nextRequestDialog();
      if (dialog && !dialog.open) {
        opener = preview;
        dialog.showModal();
        refreshNextRequest();
      }
      return;
    }
    const copy = event.target.closest("[data-copy]");
    if (copy) {
      const source = document.getElementById(copy.dataset.copy);
      if (source) {
        copyText(source.textContent).then(
          function () { flash(copy, "Copied"); },
          function () { flash(copy, "Copy failed"); }
        );
      }
      return;
    }
    const format = event.target.closest(".format-json");
    if (format) {
      const textarea = document.getElementById(format.dataset.formatFor);
      if (textarea && window.HexgridEditor && !window.HexgridEditor.format(textarea)) {
        format.textContent = "Invalid JSON";
        setTimeout(function () { format.textContent = "Format"; }, 1500);
      }
    }
    if (event.target.closest(".close-dialog")) {
      const dialog = event.target.closest("dialog");
      if (dialog) {
        dialog.close();
      } else {
        const holder = document.getElementById("dialog");
        if (holder) holder.innerHTML = "";
      }
    }
  });
})();

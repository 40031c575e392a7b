// The page's behaviour beyond htmx: the thread's scrolling, drawers and the sidebar, dialogs (one
// mechanism for all), copy buttons, composer keys and state while streaming, the settings every frame
// carries, the settings panel's morph swaps, filter and "modified only" view, the next-request preview.
// Delegated listeners only, no inline code: fine under CSP script-src 'self'.
(function () {
  "use strict";
  let pendingSend = null; // the composer's text, sent and not yet accepted or refused by the server
  let revealInvalid = false; // after a refusal: open, scroll to and focus the first invalid field

  // A number input holding text that is not a number has the value "": sent as this instead, so the
  // server refuses it by name rather than taking it for "unset".
  const NOT_A_NUMBER = "not a number";
  const NARROW = window.matchMedia("(max-width: 1023.98px)"); // as the drawers' breakpoint in chat.css

  function byId(id) { return document.getElementById(id); }
  function panel() { return byId("settings-panel"); }
  const NAMED_CONTROLS = "input[name], select[name], textarea[name]"; // what a form posts
  function streaming() {
    const status = byId("stream-status");
    return !!status && status.dataset.state === "streaming";
  }
  function syncComposer() {
    const fieldset = byId("composer-fieldset");
    if (fieldset) fieldset.disabled = streaming();
    if (!streaming()) {
      const textarea = document.querySelector("#composer textarea");
      if (textarea && document.activeElement === document.body) textarea.focus({ preventScroll: true });
    }
  }

  // --- the thread: at the newest message on load and while streaming, unless the user scrolled up -

  // The thread is its own scroll container (the page does not scroll on a conversation), so other
  // pages simply open at the top. `autoTop` is where we last scrolled it: content that grew since
  // does not count as the user scrolling away.
  let stickToBottom = true;
  let autoTop = 0;
  function thread() { return byId("thread"); }
  function atBottom(el) { return el.scrollHeight - el.clientHeight - el.scrollTop < 48; }
  function scrollToEnd(force) {
    const el = thread();
    if (!el) return;
    if (force) {
      stickToBottom = true;
    } else if (Math.abs(el.scrollTop - autoTop) > 1 && !atBottom(el)) {
      stickToBottom = false; // the reader moved it since: their scroll event may still be on its way
    }
    if (stickToBottom) {
      el.scrollTop = el.scrollHeight;
      autoTop = el.scrollTop;
    }
    syncJump();
  }
  function syncJump() {
    const el = thread();
    const jump = byId("jump-latest");
    if (el && jump) jump.hidden = stickToBottom || atBottom(el);
  }
  document.addEventListener("scroll", function (event) {
    const el = event.target;
    if (el.id !== "thread") return;
    stickToBottom = atBottom(el) || el.scrollTop >= autoTop - 2;
    syncJump();
  }, { capture: true, passive: true });

  // --- drawers (narrow screens) and the collapsible sidebar ------------------------------------

  const root = document.documentElement;
  let drawerOpener = null;
  function drawerEl(name) { return byId(name === "sidebar" ? "sidebar" : "settings"); }
  function syncToggles() {
    const sidebar = byId("sidebar-toggle");
    if (sidebar) {
      const shown = NARROW.matches ? root.dataset.drawer === "sidebar" : root.dataset.sidebar !== "collapsed";
      sidebar.setAttribute("aria-expanded", String(shown));
    }
    const settings = byId("settings-toggle");
    if (settings) settings.setAttribute("aria-expanded", String(!NARROW.matches || root.dataset.drawer === "settings"));
  }
  // While a drawer is open, what lies behind it is inert: focus stays in the drawer.
  function behind(name) {
    if (name === "sidebar") return [document.querySelector(".app-main")];
    return [byId("sidebar"), document.querySelector(".topbar"), document.querySelector(".chat")];
  }
  function openDrawer(name, opener) {
    closeDrawer(false);
    root.dataset.drawer = name;
    drawerOpener = opener || null;
    behind(name).forEach(function (el) { if (el) el.inert = true; });
    syncToggles();
    const drawer = drawerEl(name);
    const first = drawer && (drawer.querySelector("[data-drawer-focus]") ||
      drawer.querySelector("input:not([type=hidden]), select, textarea, button, a[href]"));
    if (first) first.focus({ preventScroll: true });
  }
  function closeDrawer(restoreFocus) {
    const name = root.dataset.drawer;
    if (!name) return;
    delete root.dataset.drawer;
    behind(name).forEach(function (el) { if (el) el.inert = false; });
    syncToggles();
    if (restoreFocus !== false && drawerOpener && drawerOpener.isConnected) drawerOpener.focus();
    drawerOpener = null;
  }
  NARROW.addEventListener("change", function () { closeDrawer(false); syncToggles(); });

  // --- dialogs: <dialog> + showModal(); Esc and the backdrop close; focus returns to the opener ---

  const openers = new WeakMap();
  let loadingOpener = null; // a [data-dialog] with hx-get: the dialog opens once its content is in
  function openDialog(dialog, opener) {
    if (!dialog || dialog.open) return;
    openers.set(dialog, opener || document.activeElement);
    dialog.showModal();
  }
  document.addEventListener("close", function (event) {
    const dialog = event.target;
    if (!(dialog instanceof HTMLDialogElement)) return;
    if (dialog.id === "next-request-dialog") clearTimeout(refreshTimer);
    const opener = openers.get(dialog);
    openers.delete(dialog);
    if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
  }, true);
  document.addEventListener("htmx:afterSwap", function (event) {
    const target = event.detail.target;
    if (target instanceof HTMLDialogElement && !target.open) {
      openDialog(target, loadingOpener);
      loadingOpener = null;
      const heading = target.querySelector("h2");
      if (heading) { heading.tabIndex = -1; heading.focus(); } // read from the top
    }
  });

  // hx-confirm questions (Remove a message, Reset the settings) in #confirm-dialog, not window.confirm.
  document.addEventListener("htmx:confirm", function (event) {
    const question = event.detail.question;
    const dialog = byId("confirm-dialog");
    if (!question || !dialog) return;
    event.preventDefault();
    dialog.querySelector("#confirm-question").textContent = question;
    const yes = dialog.querySelector("#confirm-yes");
    yes.textContent = event.detail.elt.dataset.confirmLabel || "Confirm";
    dialog.returnValue = "";
    dialog.addEventListener("close", function answered() {
      dialog.removeEventListener("close", answered);
      if (dialog.returnValue === "confirm") event.detail.issueRequest(true);
    });
    openDialog(dialog, event.detail.elt);
  });

  // --- keys ----------------------------------------------------------------------------------------

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && root.dataset.drawer && !document.querySelector("dialog[open]")) {
      event.preventDefault();
      closeDrawer();
      return;
    }
    if (event.key === "Escape" && streaming() && !document.querySelector("dialog[open]")) {
      const stop = byId("stop-form");
      if (stop) { event.preventDefault(); stop.requestSubmit(); }
      return;
    }
    const target = event.target;
    if (event.key === "Enter" && target.id === "settings-filter") { event.preventDefault(); return; }
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
    scrollToEnd(true);
  });

  function frameError() {
    const error = byId("frame-error");
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
    addCopyButtons(byId("messages"));
    scrollToEnd(false);
    refreshNextRequestSoon();
  });
  document.addEventListener("htmx:wsOpen", function () {
    const el = byId("connection");
    if (el) el.textContent = "";
  });
  document.addEventListener("htmx:wsClose", function () {
    const el = byId("connection");
    if (el) el.textContent = "connection lost — reconnecting…";
    pendingSend = null;
  });
  document.addEventListener("DOMContentLoaded", function () {
    syncToggles();
    syncComposer();
    addCopyButtons(byId("messages"));
    scrollToEnd(true);
    // Content that grows by itself (token views laid out late, images) keeps a reader who is at
    // the newest message there (the thread's inner box: #messages is swapped whole), and so does
    // the thread itself getting shorter (the composer grows: the token meter's line, a long draft).
    const inner = document.querySelector("#thread .thread-inner");
    if (inner && window.ResizeObserver) {
      const keep = new ResizeObserver(function () { if (stickToBottom) scrollToEnd(false); });
      keep.observe(inner);
      keep.observe(thread());
    }
  });

  // --- copy buttons ----------------------------------------------------------------------------

  // Every code block of an answer and every tool call gets one (model output cannot carry buttons:
  // it is sanitized), placed over the block's corner. View code and messages have theirs in the template.
  function addCopyButtons(root) {
    if (!root) return;
    root.querySelectorAll(".content.markdown pre, .tool-call pre").forEach(function (pre) {
      if (pre.parentElement.classList.contains("code-block")) return;
      pre.tabIndex = 0; // a long line scrolls sideways: reachable by keyboard
      const wrap = document.createElement("div");
      wrap.className = "code-block";
      pre.before(wrap);
      wrap.append(pre);
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sm copy";
      button.dataset.copyBlock = "";
      button.textContent = "Copy";
      button.setAttribute("aria-label", "Copy the code");
      wrap.prepend(button);
    });
  }

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
  function copyFrom(button, source) {
    if (!source) return;
    copyText(source.textContent).then(
      function () { flash(button, "Copied"); },
      function () { flash(button, "Copy failed"); }
    );
  }

  // --- the settings panel: morph swaps, invalid fields, filter ----------------------------------

  // idiomorph's htmx extension morphs the panel (hx-swap="morph"; a config in the attribute would
  // need eval, which the CSP forbids, so it is set here). The focused field keeps the value being
  // typed, <details> keep the user's open or closed state, the filter box and what it hides stay
  // as they are, and the CodeMirror editors (in their data-morph-keep slot, cm-json.min.js) stay
  // and show what the server returned unless the user changed it since.
  //
  // "Changed since": every control's value as the server last saw it, i.e. as posted by the last
  // save or shown by the last morph. A control the user changed after that keeps its
  // value when a swap lands (an earlier save's answer, a teammate's change): its own save is due
  // and carries that value, so the panel never shows less than what the next request sends.
  const seen = new WeakMap();
  function controlValue(control) {
    return control.type === "checkbox" || control.type === "radio" ? String(control.checked) : control.value;
  }
  function changedSinceSeen(control) {
    return seen.has(control) && seen.get(control) !== controlValue(control);
  }
  function hasFocus(control) {
    return control === document.activeElement || !!(control.editorView && control.editorView.hasFocus);
  }
  function markSeen(form) {
    form.querySelectorAll(NAMED_CONTROLS).forEach(function (control) { seen.set(control, controlValue(control)); });
  }
  function panelControl(node) {
    const control = node.tagName === "OPTION" ? node.closest("select") : node;
    return control && control.name && control.form && control.form.id === "settings-panel" ? control : null;
  }
  const kept = new WeakSet(); // controls that kept the user's value in the morph under way
  function keepsItsValue(node) {
    const control = panelControl(node);
    if (!control || !changedSinceSeen(control)) return false;
    kept.add(control);
    return true;
  }
  // After a morph, a control that took the server's value has been seen with it; one that kept
  // the user's (changed since, or being typed in) has not.
  function afterControlMorphed(node) {
    const control = node.nodeType === 1 && panelControl(node);
    if (!control || control !== node) return;
    if (kept.has(control)) kept.delete(control);
    else if (!hasFocus(control)) seen.set(control, controlValue(control));
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
    defaults.callbacks.beforeNodeMorphed = function (node) {
      return !(node.nodeType === 1 && node.hasAttribute("data-morph-keep"));
    };
    defaults.callbacks.beforeAttributeUpdated = function (name, node) {
      if (name === "open" && node.tagName === "DETAILS") return false;
      if (name === "data-filtered" || name === "data-open-before-filter") return false;
      if (node.editorView && (name === "hidden" || name === "data-editor-attached")) return false;
      if ((name === "value" || name === "checked" || name === "selected") && keepsItsValue(node)) return false;
      return true;
    };
    defaults.callbacks.afterNodeMorphed = function (node) {
      if (node.editorView) syncEditor(node);
      afterControlMorphed(node);
    };
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
      field.removeAttribute("data-filtered"); // an error is never hidden by the filter...
      const group = field.closest("details");
      if (group) { group.open = true; group.removeAttribute("data-filtered"); } // ...nor in a closed group
    });
    if (revealInvalid && invalid.length) {
      if (NARROW.matches && root.dataset.drawer !== "settings") openDrawer("settings", byId("settings-toggle"));
      const target = focusTarget(invalid[0]);
      invalid[0].scrollIntoView({ block: "center" });
      if (target) target.focus({ preventScroll: true });
    }
    revealInvalid = false;
  }

  // The filter box and "Modified only" live in the panel (data-morph-keep) but are not settings:
  // they have no name, and their events stop here so they never trigger an autosave.
  function fieldText(field) {
    if (!field.dataset.search) {
      const parts = [field.id.replace(/^field-/, "")];
      field.querySelectorAll("label, .help").forEach(function (el) { parts.push(el.textContent); });
      field.dataset.search = parts.join(" ").toLowerCase();
    }
    return field.dataset.search;
  }
  function isModified(field) {
    return Array.from(field.querySelectorAll(NAMED_CONTROLS)).some(function (control) {
      if (control.type === "checkbox" || control.type === "radio") return control.checked;
      return control.value.trim() !== "";
    });
  }
  function applyPanelFilter() {
    const form = panel();
    const box = byId("settings-filter");
    const modified = byId("settings-modified");
    if (!form || !box) return;
    const query = box.value.trim().toLowerCase();
    const onlyModified = !!(modified && modified.checked);
    const active = query !== "" || onlyModified;
    let shown = 0;
    form.querySelectorAll(".field").forEach(function (field) {
      const keep = field.classList.contains("invalid") ||
        ((!query || fieldText(field).includes(query)) && (!onlyModified || isModified(field)));
      field.toggleAttribute("data-filtered", !keep);
      if (keep) shown += 1;
    });
    form.querySelectorAll("[data-filter-group]").forEach(function (group) {
      const visible = group.querySelector(".field:not([data-filtered])");
      group.toggleAttribute("data-filtered", active && !visible);
      if (group.tagName !== "DETAILS") return;
      // Matches are shown in open groups; the groups fold back as they were when the filter clears.
      if (active) {
        if (!group.hasAttribute("data-open-before-filter")) group.setAttribute("data-open-before-filter", group.open ? "1" : "");
        if (visible) group.open = true;
      } else if (group.hasAttribute("data-open-before-filter")) {
        group.open = group.getAttribute("data-open-before-filter") === "1";
        group.removeAttribute("data-open-before-filter");
      }
    });
    form.querySelectorAll("[data-filter-hide]").forEach(function (el) { el.toggleAttribute("data-filtered", active); });
    const empty = byId("settings-filter-empty");
    if (empty) empty.hidden = !active || shown > 0;
  }
  ["input", "change"].forEach(function (type) {
    document.addEventListener(type, function (event) {
      if (!event.target.closest || !event.target.closest(".panel-tools")) return;
      event.stopPropagation();
      applyPanelFilter();
    }, true);
  });

  // A save posts the panel and stores it: that is what the server has seen. (The preset buttons
  // apply to what is stored and ignore what they post: a field changed meanwhile keeps its value
  // through their answer, and the save it is due then posts it with the preset's changes.)
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.elt.id === "settings-panel") markSeen(event.detail.elt);
  });
  document.addEventListener("DOMContentLoaded", function () { const form = panel(); if (form) markSeen(form); });
  document.addEventListener("htmx:afterSettle", function (event) {
    const target = event.target;
    if (target.id === "settings-panel") { applyPanelFilter(); afterPanelSwap(target); refreshNextRequestSoon(); }
    if (target.id === "messages") { addCopyButtons(target); scrollToEnd(false); refreshNextRequestSoon(); }
  });

  // --- the next request: a dialog, kept up to date while open ---------------------------------

  let refreshTimer = null;

  function nextRequestDialog() { return byId("next-request-dialog"); }
  function refreshNextRequest() {
    const view = byId("next-request-view");
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

  // --- clicks ------------------------------------------------------------------------------------

  // A <details data-menu> (Export) closes like a menu: a click elsewhere, or Esc.
  function closeMenus(except) {
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) {
      if (menu !== except) menu.open = false;
    });
  }
  document.addEventListener("keydown", function (event) {
    const menu = event.key === "Escape" && event.target.closest && event.target.closest("details[data-menu][open]");
    if (menu) { event.stopPropagation(); menu.open = false; menu.querySelector("summary").focus(); }
  }, true);

  document.addEventListener("click", function (event) {
    const target = event.target;
    closeMenus(target.closest("details[data-menu]"));
    // A click on a modal dialog itself is a click on its backdrop (its content fills it).
    if (target instanceof HTMLDialogElement && target.open) { target.close(); return; }

    const toggle = target.closest("#sidebar-toggle, #settings-toggle");
    if (toggle) {
      const name = toggle.id === "sidebar-toggle" ? "sidebar" : "settings";
      if (NARROW.matches) {
        if (root.dataset.drawer === name) closeDrawer(); else openDrawer(name, toggle);
      } else if (name === "sidebar" && window.HexgridPrefs) {
        window.HexgridPrefs.sidebarCollapsed(root.dataset.sidebar !== "collapsed");
        syncToggles();
      }
      return;
    }
    if (target.closest("[data-close-drawer]")) { closeDrawer(); return; }

    const opener = target.closest("[data-dialog]");
    if (opener) {
      const dialog = byId(opener.dataset.dialog);
      if (opener.hasAttribute("hx-get")) {
        loadingOpener = opener; // htmx fetches the content; afterSwap opens the dialog
      } else if (dialog) {
        openDialog(dialog, opener);
        if (dialog.id === "next-request-dialog") refreshNextRequest();
      }
      return;
    }
    const jump = target.closest("#jump-latest");
    if (jump) { scrollToEnd(true); return; }

    const copy = target.closest("[data-copy]");
    if (copy) { copyFrom(copy, byId(copy.dataset.copy)); return; }
    const block = target.closest("[data-copy-block]");
    if (block) { copyFrom(block, block.parentElement.querySelector("pre")); return; }

    const format = target.closest(".format-json");
    if (format) {
      const textarea = byId(format.dataset.formatFor);
      if (textarea && window.HexgridEditor && !window.HexgridEditor.format(textarea)) {
        format.textContent = "Invalid JSON";
        setTimeout(function () { format.textContent = "Format"; }, 1500);
      }
      return;
    }
    const close = target.closest(".close-dialog");
    if (close) {
      const dialog = close.closest("dialog");
      if (dialog) dialog.close();
    }
  });
})();

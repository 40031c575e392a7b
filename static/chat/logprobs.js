// Token view of logprobs (templates/chat/_logprobs.html, chat/logprobs.py).
// - A popover with the chosen token and its alternatives on hover, keyboard focus or tap,
//   built from the token's data-a on demand: [[text, logprob, flags?], ...], flags 1 = chosen,
//   2 = bytes not valid UTF-8 alone (text is hex), 4 = chosen but outside the top alternatives.
// - Roving tabindex: one token per view is a tab stop; arrows, Home and End move; Escape closes.
// - View preferences (text/tokens, heatmap, probability/logprob, threshold) on <html data-lp-*>,
//   shared by every message and kept in localStorage.
// Delegated events only (tokens stream in later), no eval, no inline code: fine under CSP script-src 'self'.
(function () {
  "use strict";
  const root = document.documentElement;
  const STORE = "hexgrid.logprobs";
  const CHOICES = { view: ["tokens", "text"], heat: ["on", "off"], mode: ["p", "lp"], th: ["10", "1", "5", "20", "50"] };
  const UNDER = { 1: [".l1"], 5: [".l1", ".l5"], 10: [".p0"], 20: [".p0", ".p1"], 50: [".p0", ".p1", ".p2", ".p3", ".p4"] };
  const TOKEN = ".lp-ln > span"; // tokens sit in line blocks (chat/logprobs.py)
  let prefs = load();
  let pop = null; // the popover, made on first use
  let current = null; // the token it describes
  let pinned = false; // opened by a tap or click: stays until Escape or a click elsewhere
  const roving = new WeakMap(); // view container -> its token with tabindex=0

  function load() {
    let saved = {};
    try { saved = JSON.parse(localStorage.getItem(STORE) || "{}") || {}; } catch (e) { saved = {}; }
    const out = {};
    for (const key in CHOICES) out[key] = CHOICES[key].includes(saved[key]) ? saved[key] : CHOICES[key][0];
    return out;
  }

  function setPref(key, value) {
    if (!CHOICES[key].includes(value)) return;
    prefs[key] = value;
    try { localStorage.setItem(STORE, JSON.stringify(prefs)); } catch (e) { /* private mode */ }
    apply();
    if (current) render(current);
  }

  // The CSS reads a missing attribute as the default: nothing to restyle on a page left at the defaults.
  function apply() {
    for (const key in CHOICES) {
      const name = "data-lp-" + key;
      if (prefs[key] === CHOICES[key][0]) root.removeAttribute(name);
      else if (root.getAttribute(name) !== prefs[key]) root.setAttribute(name, prefs[key]);
    }
    sync();
  }

  // Controls and counts of every section agree with the preferences (new sections arrive by htmx).
  // The server counts tokens under the default threshold; other thresholds are counted here.
  function sync() {
    document.querySelectorAll("[data-lp-view]").forEach(function (b) {
      const pressed = String(b.dataset.lpView === prefs.view);
      if (b.getAttribute("aria-pressed") !== pressed) b.setAttribute("aria-pressed", pressed);
    });
    document.querySelectorAll("input[data-lp-heat]").forEach(function (i) { i.checked = prefs.heat === "on"; });
    document.querySelectorAll("select[data-lp-mode]").forEach(function (s) { s.value = prefs.mode; });
    document.querySelectorAll("select[data-lp-th]").forEach(function (s) { s.value = prefs.th; });
    document.querySelectorAll(".lp-part").forEach(function (part) {
      const count = part.querySelector("[data-lp-under]");
      const label = part.querySelector("[data-lp-th-label]");
      const box = part.querySelector(".lp-tokens");
      if (!count || !box || (prefs.th === CHOICES.th[0] && !count.dataset.recounted)) return;
      count.dataset.recounted = "";
      const selector = UNDER[prefs.th].map(function (c) { return ":scope > .lp-ln > span" + c; }).join(",");
      count.textContent = String(box.querySelectorAll(selector).length);
      if (label) label.textContent = prefs.th + "%";
    });
  }

  // --- formatting (as chat/logprobs.py) ------------------------------------------------

  function percent(p) {
    const v = p * 100;
    if (!(v >= 0)) return "n/a";
    if (v >= 10) return v.toFixed(1) + "%";
    if (v >= 0.01) return Number(v.toPrecision(2)) + "%";
    return "<0.01%";
  }
  function logprob(lp) {
    if (lp === null || lp === undefined || Number.isNaN(lp)) return "n/a";
    if (!Number.isFinite(lp)) return lp < 0 ? "-inf" : "inf";
    if (Math.abs(lp) >= 100) return lp.toFixed(0);
    return String(Number(lp.toPrecision(3)));
  }
  function prob(lp) { return lp === null || lp === undefined ? NaN : Math.min(1, Math.exp(lp)); }
  function visible(text) {
    if (text === "") return "∅";
    let out = "";
    for (const ch of text) {
      const c = ch.codePointAt(0);
      if (ch === "\n") out += "↵";
      else if (ch === "\t") out += "→";
      else if (ch === "\r") out += "␍";
      else if (c < 0x20) out += String.fromCodePoint(0x2400 + c);
      else if (c === 0x7f) out += "␡";
      else if (ch === "\u00a0") out += "⍽";
      else if (/\s/.test(ch)) out += "·";
      else out += ch;
    }
    return out;
  }

  // --- the popover -----------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function popover() {
    if (!pop) {
      pop = el("div", "lp-pop");
      pop.id = "lp-pop";
      pop.setAttribute("role", "tooltip");
      pop.hidden = true;
      pop.addEventListener("mouseleave", function (e) { leave(e.relatedTarget); });
      document.body.appendChild(pop);
    }
    return pop;
  }

  function alternatives(token) {
    try {
      const list = JSON.parse(token.dataset.a || "[]");
      return Array.isArray(list) ? list.filter(Array.isArray) : [];
    } catch (e) {
      return [];
    }
  }

  // Both numbers, the one the preference picks in bold.
  function numbers(lp) {
    return [
      el("span", "lp-num" + (prefs.mode === "p" ? "" : " other"), percent(prob(lp))),
      el("span", "lp-num" + (prefs.mode === "lp" ? "" : " other"), logprob(lp)),
    ];
  }

  function render(token) {
    const box = popover();
    const list = alternatives(token);
    const chosen = list.find(function (a) { return (a[2] || 0) & 1; }) || [token.textContent, null, 1];
    const flags = chosen[2] || 0;
    box.replaceChildren();
    const head = el("div", "lp-pop-head");
    head.append(el("code", "", visible(String(chosen[0]))));
    const p = prob(chosen[1]);
    head.append(el("span", "", "chosen · " + percent(p) + " · logprob " + logprob(chosen[1])));
    box.append(head);
    if (flags & 4) box.append(el("p", "lp-pop-note", "Sampled outside the top " + (list.length - 1) + " alternatives."));
    if (token.classList.contains("b")) {
      box.append(el("p", "lp-pop-note", "Its bytes are not valid UTF-8 on their own: a character split across tokens is shown at the token that completes it."));
    }
    const top = list.filter(function (a) { return !((a[2] || 0) & 4); });
    if (top.length > 1 || (top.length === 1 && !((top[0][2] || 0) & 1))) {
      const rows = el("ol", "lp-alts");
      rows.setAttribute("aria-label", "Alternatives");
      top.forEach(function (a) {
        const isChosen = ((a[2] || 0) & 1) === 1;
        const row = el("li", isChosen ? "chosen" : "");
        const pa = prob(a[1]);
        const mark = el("span", "", isChosen ? "✓" : "");
        if (isChosen) mark.setAttribute("aria-label", "chosen");
        const bar = el("span", "lp-bar-box");
        const fill = el("span", "lp-bar-fill");
        fill.style.width = (pa >= 0 ? Math.max(pa * 100, 0.5) : 0) + "%";
        bar.append(fill);
        bar.setAttribute("aria-hidden", "true");
        const nums = numbers(a[1]);
        row.append(mark, el("code", "", visible(String(a[0])) + ((a[2] || 0) & 2 ? " (bytes)" : "")), bar, nums[0], nums[1]);
        rows.append(row);
      });
      box.append(rows);
    } else if (!list.length || top.length <= 1) {
      box.append(el("p", "lp-pop-note", "No alternatives were requested (top_logprobs)."));
    }
  }

  // CSS anchor positioning puts the popover under its token without reading the layout (a forced
  // layout of 4,000 tokens on the first hover); older browsers get it measured.
  const ANCHORS = !!(window.CSS && CSS.supports("anchor-name: --lp-token") && CSS.supports("position-area: bottom"));
  let anchor = null;

  function place(token) {
    const box = popover();
    if (ANCHORS) {
      if (anchor && anchor !== token) anchor.style.removeProperty("anchor-name");
      token.style.setProperty("anchor-name", "--lp-token");
      anchor = token;
      box.classList.add("anchored");
      return;
    }
    const r = token.getBoundingClientRect();
    const width = box.offsetWidth, height = box.offsetHeight;
    const left = Math.min(Math.max(8, r.left), window.innerWidth - width - 8);
    let top = r.bottom + 6;
    if (top + height > window.innerHeight - 8) top = Math.max(8, r.top - height - 6);
    box.style.left = left + "px";
    box.style.top = top + "px";
  }

  function show(token) {
    if (current && current !== token) current.removeAttribute("aria-describedby");
    current = token;
    render(token);
    const box = popover();
    box.hidden = false;
    place(token);
    token.setAttribute("aria-describedby", "lp-pop");
  }

  function hide() {
    if (current) current.removeAttribute("aria-describedby");
    if (anchor) anchor.style.removeProperty("anchor-name");
    anchor = null;
    current = null;
    pinned = false;
    if (pop) pop.hidden = true;
  }

  function tokenOf(node) {
    return node && node.closest ? node.closest(TOKEN) : null;
  }

  function leave(to) {
    if (pinned) return;
    if (to && (tokenOf(to) || (pop && pop.contains(to)))) return;
    const focused = tokenOf(document.activeElement);
    if (focused) show(focused); else hide();
  }

  // --- lazy line blocks ---------------------------------------------------------------------
  // Blocks after the first screens come marked "lz" (content-visibility: hidden): shown when near.

  const lazy = "IntersectionObserver" in window
    ? new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) { if (entry.isIntersecting) reveal(entry.target); });
    }, { rootMargin: "100% 0px" })
    : null;

  function reveal(line) {
    if (line && line.classList.contains("lz")) {
      line.classList.remove("lz");
      if (lazy) lazy.unobserve(line);
    }
  }

  function observeLazy() {
    document.querySelectorAll(".lp-ln.lz").forEach(function (line) {
      if (lazy) lazy.observe(line); else reveal(line);
    });
  }

  // --- roving tabindex -------------------------------------------------------------------

  function viewOf(token) { return token.closest(".lp-tokens"); }
  function tokensOf(view) { return view.querySelectorAll(":scope > .lp-ln > span"); }
  function nextToken(token, step) {
    const sibling = step > 0 ? token.nextElementSibling : token.previousElementSibling;
    if (sibling) return sibling;
    const line = step > 0 ? token.parentElement.nextElementSibling : token.parentElement.previousElementSibling;
    return line ? (step > 0 ? line.firstElementChild : line.lastElementChild) : null;
  }

  function rove(token) {
    const view = viewOf(token);
    const old = roving.get(view) || view.querySelector('.lp-ln > [tabindex="0"]');
    if (old && old !== token) old.removeAttribute("tabindex");
    token.tabIndex = 0;
    roving.set(view, token);
  }

  function focusToken(token) {
    reveal(token.parentElement);
    rove(token);
    token.focus({ preventScroll: true });
  }

  function jump(button) {
    const part = button.closest(".lp-part");
    const view = part && part.querySelector(".lp-tokens");
    const token = view && tokensOf(view)[Number(button.dataset.lpJump)];
    if (!token) return;
    if (prefs.view !== "tokens") setPref("view", "tokens");
    const details = token.closest("details");
    if (details && !details.open) details.open = true;
    reveal(token.parentElement);
    token.scrollIntoView({ block: "center" });
    pinned = false;
    focusToken(token);
    show(token);
    token.classList.remove("lp-hit");
    void token.offsetWidth; // restart the highlight animation
    token.classList.add("lp-hit");
  }

  // --- events ------------------------------------------------------------------------------

  document.addEventListener("mouseover", function (e) {
    const token = tokenOf(e.target);
    if (token && !pinned && token !== current) show(token);
  });
  document.addEventListener("mouseout", function (e) {
    if (tokenOf(e.target)) leave(e.relatedTarget);
  });
  document.addEventListener("focusin", function (e) {
    const token = tokenOf(e.target);
    if (token) {
      rove(token);
      if (!pinned || token !== current) { pinned = false; show(token); }
    }
  });
  document.addEventListener("focusout", function (e) {
    if (tokenOf(e.target) && !pinned && !tokenOf(e.relatedTarget)) hide();
  });

  document.addEventListener("click", function (e) {
    const token = tokenOf(e.target);
    if (token) { // a tap or click pins the popover
      focusToken(token);
      show(token);
      pinned = true;
      return;
    }
    const target = e.target.closest ? e.target : null;
    const jumpTo = target && target.closest("[data-lp-jump]");
    if (jumpTo) { jump(jumpTo); return; }
    const viewButton = target && target.closest("[data-lp-view]");
    if (viewButton) setPref("view", viewButton.dataset.lpView);
    if (pinned && !(pop && pop.contains(e.target))) hide();
  });

  document.addEventListener("change", function (e) {
    const t = e.target;
    if (t.matches("input[data-lp-heat]")) setPref("heat", t.checked ? "on" : "off");
    else if (t.matches("select[data-lp-mode]")) setPref("mode", t.value);
    else if (t.matches("select[data-lp-th]")) setPref("th", t.value);
  });

  // Capture: Escape closes the popover before chat.js reads it as "stop the stream".
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && current && pop && !pop.hidden) {
      hide();
      e.stopPropagation();
      e.preventDefault();
      return;
    }
    const token = tokenOf(e.target);
    if (!token) return;
    let next = null;
    if (e.key === "ArrowRight") next = nextToken(token, 1);
    else if (e.key === "ArrowLeft") next = nextToken(token, -1);
    else if (e.key === "Home") next = viewOf(token).querySelector(TOKEN);
    else if (e.key === "End") next = viewOf(token).lastElementChild.lastElementChild;
    else if (e.key === "Enter" || e.key === " ") { e.preventDefault(); show(token); return; }
    if (next) {
      e.preventDefault();
      pinned = false;
      focusToken(next); // reveals its line block first: a hidden element cannot take focus
      next.scrollIntoView({ block: "nearest" });
      show(next);
    }
  }, true);

  window.addEventListener("scroll", function () {
    if (current && !ANCHORS) {
      if (current.isConnected) place(current); else hide();
    }
  }, { passive: true, capture: true });

  // A final render replaces the streamed message: new controls to sync, maybe a stale popover.
  document.addEventListener("htmx:wsAfterMessage", function (e) {
    if (current && !current.isConnected) hide();
    const message = e.detail && e.detail.message;
    if (typeof message !== "string" || message.indexOf('class="lp"') >= 0) sync();
    if (typeof message !== "string" || message.indexOf("lp-ln lz") >= 0) observeLazy();
  });

  apply();
  observeLazy();
  root.dataset.lpReady = "";
})();

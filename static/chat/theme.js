// Theme and sidebar preferences, applied before the first paint (loaded without defer in <head>).
// The theme is <html data-theme="auto|light|dark"> kept in localStorage "theme": the same attribute
// and key as the Django admin's own theme.js, so one choice themes the playground and the console.
(function () {
  "use strict";
  const root = document.documentElement;
  const THEMES = ["auto", "light", "dark"];
  const SIDEBAR = "hexgrid.sidebar"; // "collapsed", or absent

  function read(key) {
    try { return localStorage.getItem(key); } catch (e) { return null; } // storage can be off
  }
  function write(key, value) {
    try {
      if (value === null) localStorage.removeItem(key); else localStorage.setItem(key, value);
    } catch (e) { /* the choice lasts for this page only */ }
  }
  function applyTheme(value) {
    root.dataset.theme = THEMES.includes(value) ? value : "auto";
    document.querySelectorAll("input[data-theme-choice]").forEach(function (input) {
      input.checked = input.value === root.dataset.theme;
    });
  }

  applyTheme(read("theme"));
  if (read(SIDEBAR) === "collapsed") root.dataset.sidebar = "collapsed";

  document.addEventListener("change", function (event) {
    const input = event.target;
    if (!input.matches || !input.matches("input[data-theme-choice]")) return;
    write("theme", input.value);
    applyTheme(input.value);
  });
  // Another tab (or the admin) changed it.
  window.addEventListener("storage", function (event) {
    if (event.key === "theme") applyTheme(event.newValue);
  });
  document.addEventListener("DOMContentLoaded", function () { applyTheme(root.dataset.theme); });

  window.HexgridPrefs = {
    sidebarCollapsed: function (collapsed) {
      if (collapsed) root.dataset.sidebar = "collapsed"; else delete root.dataset.sidebar;
      write(SIDEBAR, collapsed ? "collapsed" : null);
    },
  };
})();

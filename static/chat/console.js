// The endpoint console's accessibility fix-ups for Django's own widgets (issue 17's axe audit of the
// endpoint page): filter_horizontal's search icon is a <span> with an aria-label and no role, which
// assistive technology ignores (axe aria-prohibited-attr); it labels an image, so it gets role="img".
(function () {
  "use strict";
  function fix() {
    document.querySelectorAll("span.help-tooltip[aria-label]:not([role])").forEach(function (span) {
      span.setAttribute("role", "img");
    });
  }
  // SelectFilter2.js builds the widget on window load: fix after it.
  window.addEventListener("load", function () { setTimeout(fix, 0); });
})();

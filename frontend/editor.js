// CodeMirror 6 JSON editors for <textarea data-json-editor>: syntax highlighting, JSON linting,
// a "Format" button. The textarea stays the form field (kept in sync), so forms work without JS.
import { EditorView, basicSetup } from "codemirror";
import { json, jsonParseLinter } from "@codemirror/lang-json";
import { linter, lintGutter } from "@codemirror/lint";

function attach(textarea) {
  if (textarea.dataset.editorAttached) return;
  textarea.dataset.editorAttached = "1";
  const view = new EditorView({
    doc: textarea.value,
    extensions: [
      basicSetup,
      json(),
      linter(jsonParseLinter()),
      lintGutter(),
      EditorView.lineWrapping,
      EditorView.updateListener.of((update) => {
        if (update.docChanged) textarea.value = update.state.doc.toString();
      }),
      EditorView.domEventHandlers({
        blur: () => { textarea.dispatchEvent(new Event("change", { bubbles: true })); },
      }),
    ],
  });
  textarea.hidden = true;
  textarea.after(view.dom);
  view.dom.classList.add("json-editor");
  textarea.editorView = view;
}

function setValue(textarea, text) {
  const view = textarea.editorView;
  if (view) view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
  textarea.value = text;
  textarea.dispatchEvent(new Event("change", { bubbles: true }));
}

function format(textarea) {
  try {
    setValue(textarea, JSON.stringify(JSON.parse(textarea.value), null, 2));
    return true;
  } catch (e) {
    return false;
  }
}

function attachAll(root) {
  (root || document).querySelectorAll("textarea[data-json-editor]").forEach(attach);
}

window.HexgridEditor = { attach, attachAll, format, setValue };
document.addEventListener("DOMContentLoaded", () => attachAll(document));
document.addEventListener("htmx:afterSettle", (event) => attachAll(event.target));

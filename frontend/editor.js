// CodeMirror 6 JSON editors for <textarea data-json-editor>: syntax highlighting, JSON linting,
// a "Format" button. The textarea stays the form field (kept in sync), so forms work without JS.
// Colours come from the design system's custom properties (static/chat/chat.css), so the editors
// follow the light and dark themes like everything else.
import { EditorView, basicSetup } from "codemirror";
import { json, jsonParseLinter } from "@codemirror/lang-json";
import { HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { linter, lintGutter } from "@codemirror/lint";
import { tags } from "@lezer/highlight";

// Blank means "unset" in the settings panel: an empty editor is not a JSON error.
const parseLinter = jsonParseLinter();
function lintUnlessBlank(view) {
  return view.state.doc.toString().trim() === "" ? [] : parseLinter(view);
}

const theme = EditorView.theme({
  "&": { color: "var(--fg)", backgroundColor: "var(--surface)" },
  ".cm-content": { caretColor: "var(--fg)", fontFamily: "var(--font-mono)" },
  ".cm-cursor, .cm-dropCursor": { borderLeftColor: "var(--fg)" },
  "&.cm-focused": { outline: "2px solid var(--focus)", outlineOffset: "1px" },
  "&.cm-focused .cm-selectionBackground, .cm-selectionBackground, ::selection": { backgroundColor: "var(--selection)" },
  ".cm-gutters": { backgroundColor: "var(--surface-2)", color: "var(--fg-muted)", borderRight: "1px solid var(--border)" },
  ".cm-activeLine": { backgroundColor: "var(--hover)" },
  ".cm-activeLineGutter": { backgroundColor: "var(--hover)", color: "var(--fg)" },
  ".cm-matchingBracket, &.cm-focused .cm-matchingBracket": { backgroundColor: "var(--selection)", color: "inherit" },
  ".cm-tooltip": { backgroundColor: "var(--surface)", color: "var(--fg)", border: "1px solid var(--border)" },
});

const highlight = HighlightStyle.define([
  { tag: tags.propertyName, color: "var(--syn-property)" },
  { tag: tags.string, color: "var(--syn-string)" },
  { tag: tags.number, color: "var(--syn-number)" },
  { tag: [tags.bool, tags.null, tags.keyword], color: "var(--syn-keyword)" },
  { tag: [tags.punctuation, tags.separator, tags.brace, tags.squareBracket], color: "var(--fg-muted)" },
  { tag: tags.invalid, color: "var(--danger)" },
]);

function attach(textarea) {
  if (textarea.dataset.editorAttached) return;
  textarea.dataset.editorAttached = "1";
  const view = new EditorView({
    doc: textarea.value,
    extensions: [
      basicSetup,
      json(),
      theme,
      syntaxHighlighting(highlight),
      linter(lintUnlessBlank),
      lintGutter(),
      EditorView.lineWrapping,
      EditorView.contentAttributes.of(textarea.id ? { "aria-labelledby": textarea.id + "-label" } : {}),
      EditorView.updateListener.of((update) => {
        if (update.docChanged) textarea.value = update.state.doc.toString();
      }),
      EditorView.domEventHandlers({
        blur: () => { textarea.dispatchEvent(new Event("change", { bubbles: true })); },
      }),
    ],
  });
  textarea.hidden = true;
  // The settings panel renders a slot for the editor (id "<textarea id>-editor", data-morph-keep):
  // a morph of the panel then keeps the editor where it is instead of meeting an unknown node.
  const slot = textarea.id ? document.getElementById(textarea.id + "-editor") : null;
  if (slot) slot.append(view.dom); else textarea.after(view.dom);
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

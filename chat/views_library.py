"""The prompt library's pages: prompts (editor, versions, diff), presets, test sets (import, table edits),
and their two doors in a conversation: Use a prompt, Save/Apply a preset.

Access as for conversations: whoever may see one may use it (a prompt in a conversation, a preset on
their settings); only its owner may change, share or delete it. Anyone else gets 404, never 403.
"""

from __future__ import annotations

import json

from django.contrib import messages as django_messages
from django.db import transaction
from django.db.models import Count, Max
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

from chat import branches, fragments, library, testdata
from chat.forms_library import ColumnForm, NameForm, NewTestSetForm, PromptForm, TestSetImportForm
from chat.models import Conversation, Message
from chat.models_library import Preset, Prompt, PromptVersion, TestCase, TestSet
from chat.panel import PanelForm
from chat.sharing import VisibilityForm
from chat.templating import ROLES, TemplateError, valid_name, variables
from chat.views import _page_context, _thread_changed, editable_conversation, visible_conversation

LIBRARY = "chat/library.html"
PROMPT = "chat/prompt.html"
TESTSET = "chat/testset.html"
IN_CONVERSATION = "chat/_library_conversation.html"


# --- the library page --------------------------------------------------------------------------------


def _library_context(request: HttpRequest, **extra) -> dict:
    user = request.user
    prompts = (Prompt.objects.visible_to(user).select_related("owner", "team")
               .annotate(version_count=Count("versions")).order_by("-updated_at", "-pk"))
    testsets = (TestSet.objects.visible_to(user).select_related("owner", "team")
                .annotate(case_count=Count("cases")).order_by("-updated_at", "-pk"))
    presets = Preset.objects.visible_to(user).select_related("owner", "team").order_by("-updated_at", "-pk")
    return {
        "prompts": prompts, "testsets": testsets, "presets": presets, "teams": list(user.groups.order_by("name")),
        "prompt_form": extra.pop("prompt_form", None) or NameForm(auto_id="new_prompt_%s"),
        "testset_form": extra.pop("testset_form", None) or NewTestSetForm(auto_id="new_testset_%s"),
        **extra,
    }


@require_GET
def library_page(request: HttpRequest) -> HttpResponse:
    return render(request, LIBRARY, _library_context(request))


# --- prompts -----------------------------------------------------------------------------------------


@require_POST
def prompt_new(request: HttpRequest) -> HttpResponse:
    form = NameForm(request.POST, auto_id="new_prompt_%s")
    if not form.is_valid():
        return render(request, LIBRARY, _library_context(request, prompt_form=form), status=400)
    prompt = Prompt.objects.create(owner=request.user, name=form.cleaned_data["name"])
    return redirect("chat:prompt", public_id=prompt.public_id)


def _editor_rows(request: HttpRequest) -> list[dict]:
    roles, contents = request.POST.getlist("role"), request.POST.getlist("content")
    return [{"role": role if role in ROLES else "user", "content": content} for role, content in zip(roles, contents)]


def _prompt_context(request: HttpRequest, prompt: Prompt, **extra) -> dict:
    versions = list(prompt.versions.select_related("created_by").order_by("-number"))
    latest = versions[0] if versions else None
    rows = extra.pop("rows", None)
    if rows is None:
        rows = [dict(m) for m in latest.messages] if latest else [{"role": "system", "content": ""}, {"role": "user", "content": ""}]
    can_edit = prompt.can_edit(request.user)
    return {
        "prompt": prompt, "versions": versions, "latest": latest, "rows": rows, "roles": ROLES, "can_edit": can_edit,
        "detected": _detect(rows), "settings_form": extra.pop("settings_form", None) or PromptForm(
            initial={"name": prompt.name, "description": prompt.description,
                     "preset": prompt.preset.public_id if prompt.preset else None}, user=request.user),
        "visibility_form": VisibilityForm(initial=VisibilityForm.initial_for(prompt), teams=request.user.groups.all()),
        "diff_a": versions[1].number if len(versions) > 1 else None, "diff_b": latest.number if latest else None,
        **extra,
    }


def _detect(rows: list[dict]) -> dict:
    """The variables the editor's messages use, or what is wrong with them (as shown live)."""
    try:
        library.clean_messages([r["role"] for r in rows], [r["content"] for r in rows])
        return {"names": variables(rows), "error": ""}
    except TemplateError as e:
        try:
            names = variables(rows)
        except TemplateError:
            names = []
        return {"names": names, "error": str(e)}


@require_GET
def prompt_page(request: HttpRequest, public_id) -> HttpResponse:
    prompt = library.visible(Prompt, request.user, public_id)
    return render(request, PROMPT, _prompt_context(request, prompt))


@require_POST
def prompt_editor(request: HttpRequest, public_id) -> HttpResponse:
    """The editor re-drawn with a message added or removed (what was typed comes back as typed)."""
    prompt = library.visible(Prompt, request.user, public_id, edit=True)
    rows = _editor_rows(request)
    if "add" in request.POST and len(rows) < library.MAX_MESSAGES:
        rows.append({"role": "user" if not rows or rows[-1]["role"] != "user" else "assistant", "content": ""})
    remove = request.POST.get("remove", "")
    if remove.isdigit() and int(remove) < len(rows) and len(rows) > 1:
        rows.pop(int(remove))
    context = _prompt_context(request, prompt, rows=rows, note=request.POST.get("note", ""))
    return render(request, f"{PROMPT}#editor", context)


@require_POST
def prompt_variables(request: HttpRequest, public_id) -> HttpResponse:
    """Live: the variables found in the messages being typed, or the first problem with them."""
    library.visible(Prompt, request.user, public_id, edit=True)
    return render(request, f"{PROMPT}#variables", {"detected": _detect(_editor_rows(request))})


@require_POST
def prompt_save(request: HttpRequest, public_id) -> HttpResponse:
    """Save = a new version (who, when, note); the editor comes back, and the versions list out of band."""
    prompt = library.visible(Prompt, request.user, public_id, edit=True)
    rows = _editor_rows(request)
    note = request.POST.get("note", "")
    try:
        messages = library.clean_messages([r["role"] for r in rows], [r["content"] for r in rows])
        latest = prompt.latest()
        if latest and latest.messages == messages and latest.values == (library.snapshot(prompt.preset.values) if prompt.preset else {}):
            raise TemplateError(f"Nothing changed since v{latest.number}: no new version saved.")
    except TemplateError as e:
        context = _prompt_context(request, prompt, rows=rows, note=note, save_error=str(e))
        return render(request, f"{PROMPT}#editor", context)
    version = library.save_version(prompt, messages=messages, note=note, user=request.user)
    context = _prompt_context(request, prompt, saved=version)
    response = render(request, f"{PROMPT}#editor", context)
    response.content += render_to_string(f"{PROMPT}#versions", {**context, "oob": "true"}, request).encode()
    return response


@require_POST
def prompt_settings(request: HttpRequest, public_id) -> HttpResponse:
    prompt = library.visible(Prompt, request.user, public_id, edit=True)
    form = PromptForm(request.POST, user=request.user)
    saved = form.is_valid()
    if saved:
        prompt.name, prompt.description = form.cleaned_data["name"], form.cleaned_data["description"]
        prompt.preset = form.cleaned_data["preset"]
        prompt.save()
    context = _prompt_context(request, prompt, settings_form=None if saved else form, settings_saved=saved)
    return render(request, f"{PROMPT}#prompt-settings", context)


@require_GET
def prompt_diff(request: HttpRequest, public_id) -> HttpResponse:
    prompt = library.visible(Prompt, request.user, public_id)
    numbers = {v.number: v for v in prompt.versions.all()}
    try:
        old, new = numbers[int(request.GET.get("a", ""))], numbers[int(request.GET.get("b", ""))]
    except (KeyError, ValueError):
        return render(request, f"{PROMPT}#diff", {"diff_error": "Choose two saved versions."})
    return render(request, f"{PROMPT}#diff", {"diff": library.diff_versions(old, new), "prompt": prompt})


# --- sharing and deleting (prompts, presets, test sets alike) ---------------------------------------------

KINDS = {"prompt": Prompt, "preset": Preset, "testset": TestSet}


def _kind(kind: str):
    if kind not in KINDS:
        raise Http404("No such kind")
    return KINDS[kind]


@require_POST
def item_visibility(request: HttpRequest, kind: str, public_id) -> HttpResponse:
    row = library.visible(_kind(kind), request.user, public_id, edit=True)
    form = VisibilityForm(request.POST, teams=request.user.groups.all())
    if form.is_valid():
        library.share(row, form.teams.get(form.cleaned_data["share"]))
    return render(request, "chat/_library_item.html#visibility", {
        "row": row, "kind": kind, "visibility_form": VisibilityForm(initial=VisibilityForm.initial_for(row), teams=request.user.groups.all()),
        "visibility_saved": form.is_valid(), "visibility_errors": form.errors.get("share"),
    })


@require_POST
def item_rename(request: HttpRequest, kind: str, public_id) -> HttpResponse:
    """Presets and test sets (a prompt is renamed with its settings)."""
    row = library.visible(_kind(kind), request.user, public_id, edit=True)
    form = NameForm(request.POST, auto_id=f"{kind}_{row.public_id}_%s")
    if form.is_valid():
        row.name = form.cleaned_data["name"]
        row.save(update_fields=["name", "updated_at"])
    return render(request, "chat/_library_item.html#rename", {"row": row, "kind": kind, "rename_form": form,
                                                              "renamed": form.is_valid()})


@require_POST
def item_duplicate(request: HttpRequest, kind: str, public_id) -> HttpResponse:
    """Anyone who may see it gets a private copy of their own (as a conversation's fork)."""
    row = library.visible(_kind(kind), request.user, public_id)
    copy = library.duplicate(row, request.user)
    django_messages.success(request, f"“{copy.name}” is your own copy: change it as you like.")
    if kind == "preset":
        return redirect(reverse("chat:library") + f"#preset-{copy.public_id}")
    return redirect("chat:prompt" if kind == "prompt" else "chat:testset", public_id=copy.public_id)


@require_POST
def item_delete(request: HttpRequest, kind: str, public_id) -> HttpResponse:
    row = library.visible(_kind(kind), request.user, public_id, edit=True)
    name = row.name
    row.delete()
    django_messages.success(request, f"Deleted “{name}”.")
    if request.htmx and kind == "preset":
        return HttpResponse("")  # the preset's row goes; the rest of the page stays as it is
    if request.htmx:  # from its own page (after the confirmation dialog): on to the library
        return HttpResponseClientRedirect(reverse("chat:library"))
    return redirect("chat:library")


# --- presets in a conversation ------------------------------------------------------------------------


def _presets_partial(request: HttpRequest, conversation, **extra) -> str:
    return render_to_string(f"{IN_CONVERSATION}#presets", {
        "conversation": conversation, "can_edit": conversation.can_edit(request.user),
        "presets": Preset.objects.visible_to(request.user).order_by("name"), **extra,
    }, request)


@require_POST
def preset_save(request: HttpRequest, public_id) -> HttpResponse:
    """A new preset of the user's own from the conversation's settings: as the panel shows them (the
    owner's panel is posted along and validated), or as stored (a teammate reading it)."""
    conversation = visible_conversation(request, public_id)
    form = NameForm(request.POST, auto_id="preset_%s")
    if not form.is_valid():
        return HttpResponse(_presets_partial(request, conversation, preset_form=form))
    values = library.snapshot_of(conversation)
    if conversation.can_edit(request.user) and "system_prompt" in request.POST:
        panel = PanelForm(request.POST, user=request.user, conversation=conversation)
        if not panel.is_valid():
            error = "The settings have errors: fix the marked fields first (nothing was saved)."
            return HttpResponse(_presets_partial(request, conversation, preset_form=form, preset_error=error))
        values = library.snapshot(panel.stored())
    preset = Preset.objects.create(owner=request.user, name=form.cleaned_data["name"], values=values)
    return HttpResponse(_presets_partial(request, conversation, preset_saved=preset))


@require_POST
def preset_apply(request: HttpRequest, public_id) -> HttpResponse:
    """One step: the preset's settings go through the settings panel's form, and the panel shows them."""
    conversation = editable_conversation(request, public_id)
    preset = Preset.objects.visible_to(request.user).filter(public_id=request.POST.get("preset") or None).first()
    if preset is None:
        return HttpResponse(_presets_partial(request, conversation, preset_error="Choose one of the presets."))
    form = library.apply(conversation, preset.values, user=request.user)
    if form.errors:  # the panel keeps showing what is stored (unchanged), and says why
        context = _page_context(request, conversation)
        problems = "; ".join(f"{name} {error}" if name != "__all__" else str(error)
                             for name, errors in form.errors.items() for error in errors)
        context["panel_notices"] = [f"Preset “{preset.name}” not applied: {problems}"]
    else:
        context = _page_context(request, conversation, saved=True)
        context["panel_notices"] = [f"Preset “{preset.name}” applied", *form.notices]
    response = render(request, "chat/conversation.html#settings-panel", context)
    response.content += _presets_partial(request, conversation, oob=True, preset_applied=None if form.errors else preset).encode()
    return response


@require_POST
def pane_preset(request: HttpRequest, public_id, pane_id) -> HttpResponse:
    """One step: a preset becomes a comparison pane's overrides (its settings on top of the shared ones)."""
    from chat import compare

    conversation = editable_conversation(request, public_id)
    if conversation.kind != Conversation.Kind.COMPARE:
        raise Http404("No such comparison")
    panes = list(conversation.panes.all())
    pane = next((p for p in panes if str(p.public_id) == str(pane_id)), None)
    if pane is None:
        raise Http404("No such pane")
    label = f"pane {panes.index(pane) + 1}"
    preset = Preset.objects.visible_to(request.user).filter(public_id=request.POST.get("preset") or None).first()
    if preset is None:
        django_messages.error(request, f"Choose a preset to apply to {label}.")
    elif compare.streaming(conversation):
        django_messages.error(request, "The panes are answering: stop them before changing a pane.")
    else:
        try:
            overrides, skipped = library.pane_overrides(preset.values)
        except compare.CompareError as e:
            django_messages.error(request, f"Preset “{preset.name}” not applied to {label}: {e}")
        else:
            pane.overrides = overrides
            pane.save(update_fields=["overrides"])
            note = f"; not taken: {', '.join(skipped)}" if skipped else ""
            django_messages.success(request, f"Preset “{preset.name}” applied to {label}{note}.")
    # The page is drawn again with the pane's new chips and the message (as Add a pane does).
    return HttpResponseClientRedirect(reverse("chat:conversation", args=[conversation.public_id]))


# --- prompts in a conversation ---------------------------------------------------------------------------


def _version_for(request: HttpRequest) -> PromptVersion | None:
    prompt = Prompt.objects.visible_to(request.user).filter(public_id=request.POST.get("prompt") or request.GET.get("prompt") or None).first()
    if prompt is None:
        return None
    number = request.POST.get("version") or request.GET.get("version")
    versions = prompt.versions.order_by("-number")
    return (versions.filter(number=number) if number and number.isdigit() else versions).first()


@require_GET
def use_prompt_form(request: HttpRequest, public_id) -> HttpResponse:
    """The variables form of the chosen prompt version (latest unless one is named)."""
    conversation = editable_conversation(request, public_id)
    version = _version_for(request)
    return render(request, f"{IN_CONVERSATION}#prompt-variables", {"conversation": conversation, "version": version,
                                                                     "values": {}})


def _use_refused(request: HttpRequest, conversation, version, values: dict, error: str) -> HttpResponse:
    """Nothing added: the variables form comes back in place with what was typed and why."""
    response = render(request, f"{IN_CONVERSATION}#prompt-variables",
                      {"conversation": conversation, "version": version, "values": values, "use_error": error})
    return retarget(reswap(response, "outerHTML"), "#prompt-variables")


@require_POST
def use_prompt(request: HttpRequest, public_id) -> HttpResponse:
    """Fill the variables, add the rendered messages, take the version's settings, and run: the run
    goes over the socket like any send (library.js submits Run once this lands)."""
    conversation = editable_conversation(request, public_id)
    version = _version_for(request)
    if version is None:
        return _use_refused(request, conversation, None, {}, "Choose a prompt with a saved version.")
    names = version.variables
    values = {name: request.POST.get(f"var_{name}", "") for name in names}
    error = ""
    empty = [name for name in names if not values[name].strip()]
    try:
        if empty:
            raise TemplateError(f"No value for the variable {empty[0]!r}.")
        rendered = library.render_version(version, values)
    except TemplateError as e:
        error = str(e)
    if not error and any(m.status == Message.Status.STREAMING for m in conversation.thread()):
        error = "An answer is still being generated: stop it first."
    if error:
        return _use_refused(request, conversation, version, values, error)
    settings_changed = False
    with transaction.atomic():
        if version.values:
            form = library.apply(conversation, version.values, user=request.user)
            if form.errors:
                transaction.set_rollback(True)
                problems = "; ".join(str(e) for errors in form.errors.values() for e in errors)
                return _use_refused(request, conversation, version, values,
                                    f"The prompt's settings do not fit this endpoint: {problems}")
            settings_changed = True
        parent = branches.tail(conversation.thread())
        for message in rendered:
            parent = branches.add_child(conversation, parent, role=message["role"], content=message["content"])
        conversation.prompt_version = version
        named = not conversation.title
        if named:
            conversation.title = f"{version.prompt.name} v{version.number}"[:200]
        conversation.save(update_fields=["prompt_version", "title", "updated_at"])
    response = _thread_changed(request, conversation)
    if named:
        response.content += fragments.title(conversation).encode()  # the header's title, out of band
    if settings_changed:
        context = {**_page_context(request, conversation, saved=True), "oob": "true"}
        context["panel_notices"] = [f"Settings of {version.prompt.name} v{version.number} applied"]
        response.content += render_to_string("chat/conversation.html#settings-panel", context, request).encode()
    run = rendered[-1]["role"] == "user"  # an answer is asked for; a template ending otherwise is only added
    response.content += render_to_string(f"{IN_CONVERSATION}#prompt-used", {"conversation": conversation, "run": run}, request).encode()
    # library.js answers with Run over the socket: the run is an ordinary one, carrying the panel's values.
    response["HX-Trigger-After-Settle"] = json.dumps({"prompt-used": {"run": run}})
    return response


# --- test sets -------------------------------------------------------------------------------------------


def _read(form) -> testdata.Parsed:
    upload = form.cleaned_data.get("file")
    if upload is not None:
        if upload.size > testdata.MAX_BYTES:
            raise testdata.DataError(f"The file is too large ({upload.size:,} bytes; at most {testdata.MAX_BYTES:,}).")
        text, name = testdata.decode(upload.read()), upload.name
    else:
        text, name = form.cleaned_data["text"], ""
    fmt = form.cleaned_data.get("format") or testdata.guess_format(text, name)
    return testdata.parse(text, fmt)


@require_POST
def testset_new(request: HttpRequest) -> HttpResponse:
    """A test set from a file or a paste: all rows or none (the first problem is named)."""
    form = NewTestSetForm(request.POST, request.FILES, auto_id="new_testset_%s")
    if form.is_valid():
        try:
            parsed = _read(form)
        except testdata.DataError as e:
            form.add_error(None, str(e))
        else:
            with transaction.atomic():
                testset = TestSet.objects.create(owner=request.user, name=form.cleaned_data["name"], variables=parsed.variables)
                _store_rows(testset, parsed.rows)
            return redirect("chat:testset", public_id=testset.public_id)
    return render(request, LIBRARY, _library_context(request, testset_form=form, testset_open=True), status=400)


def _store_rows(testset: TestSet, rows: list[dict], start: int = 0) -> None:
    TestCase.objects.bulk_create(
        TestCase(test_set=testset, position=start + i, values=row["values"], expected=row["expected"]) for i, row in enumerate(rows)
    )


def _testset_context(request: HttpRequest, testset: TestSet, **extra) -> dict:
    return {
        "testset": testset, "cases": list(testset.cases.order_by("position")), "can_edit": testset.can_edit(request.user),
        "import_form": extra.pop("import_form", None) or TestSetImportForm(auto_id="import_%s"),
        "column_form": extra.pop("column_form", None) or ColumnForm(auto_id="column_%s"),
        "visibility_form": VisibilityForm(initial=VisibilityForm.initial_for(testset), teams=request.user.groups.all()),
        "rename_form": NameForm(initial={"name": testset.name}, auto_id=f"testset_{testset.public_id}_%s"),
        **extra,
    }


@require_GET
def testset_page(request: HttpRequest, public_id) -> HttpResponse:
    testset = library.visible(TestSet, request.user, public_id)
    return render(request, TESTSET, _testset_context(request, testset))


@require_POST
def testset_import(request: HttpRequest, public_id) -> HttpResponse:
    """Add rows from a file or a paste (their columns must be the set's), or replace them all; all or nothing."""
    testset = library.visible(TestSet, request.user, public_id, edit=True)
    form = TestSetImportForm(request.POST, request.FILES, auto_id="import_%s")
    replace = request.POST.get("mode") == "replace"
    if form.is_valid():
        try:
            parsed = _read(form)
            if not replace and parsed.variables != testset.variables:
                raise testdata.DataError(
                    f"The columns ({', '.join(parsed.variables)}) are not this set's ({', '.join(testset.variables)}): "
                    "choose Replace all rows to change them.")
        except testdata.DataError as e:
            form.add_error(None, str(e))
        else:
            with transaction.atomic():
                locked = TestSet.objects.select_for_update().get(pk=testset.pk)
                if replace:
                    locked.cases.all().delete()
                    locked.variables = parsed.variables
                last = None if replace else locked.cases.aggregate(n=Max("position"))["n"]
                start = 0 if last is None else last + 1
                _store_rows(locked, parsed.rows, start)
                locked.save(update_fields=["variables", "updated_at"])
            testset.refresh_from_db()
            context = _testset_context(request, testset, imported=len(parsed.rows), replaced=replace)
            return render(request, f"{TESTSET}#table", context)
    return render(request, f"{TESTSET}#table", _testset_context(request, testset, import_form=form, import_open=True))


def _case(testset: TestSet, position: int) -> TestCase:
    # Rows are addressed by their place in the set (row-<position>), never by a database key.
    case = testset.cases.filter(position=position).first()
    if case is None:
        raise Http404("No such row")
    return case


@require_http_methods(["GET", "POST"])
def testset_row(request: HttpRequest, public_id, position: int) -> HttpResponse:
    """GET: the row (or, with ?edit, its inputs); POST: save the row's cells (every variable needs a value)."""
    testset = library.visible(TestSet, request.user, public_id, edit=request.method == "POST" or "edit" in request.GET)
    case = _case(testset, position)
    context = {"testset": testset, "case": case, "can_edit": testset.can_edit(request.user)}
    if request.method == "GET":
        return render(request, f"{TESTSET}#{'row-edit' if 'edit' in request.GET else 'row'}", context)
    values, expected, error = _row_values(request, testset)
    case.values, case.expected = values, expected
    if error:
        return render(request, f"{TESTSET}#row-edit", {**context, "row_error": error})
    case.save(update_fields=["values", "expected"])
    testset.save(update_fields=["updated_at"])
    return render(request, f"{TESTSET}#row", context)


def _row_values(request: HttpRequest, testset: TestSet) -> tuple[dict, str, str]:
    """A row's cells as posted, the expected text, and what is wrong with them ("" when nothing)."""
    values = {name: request.POST.get(f"var_{name}", "") for name in testset.variables}
    expected = request.POST.get("expected", "")
    for name, value in [*values.items(), (testdata.EXPECTED, expected)]:
        if len(value) > testdata.MAX_CELL:
            return values, expected, f'Column "{name}": too long ({len(value):,} characters; at most {testdata.MAX_CELL:,}).'
        if name != testdata.EXPECTED and not value.strip():
            return values, expected, f'Column "{name}": empty (every variable needs a value).'
    return values, expected, ""


@require_GET
def testset_row_new(request: HttpRequest, public_id) -> HttpResponse:
    """An empty row's inputs at the end of the table; nothing is stored until it is saved."""
    testset = library.visible(TestSet, request.user, public_id, edit=True)
    return render(request, f"{TESTSET}#row-new", {"testset": testset, "values": {}, "expected": ""})


@require_POST
def testset_row_add(request: HttpRequest, public_id) -> HttpResponse:
    testset = library.visible(TestSet, request.user, public_id, edit=True)
    values, expected, error = _row_values(request, testset)
    if error:
        return render(request, f"{TESTSET}#row-new", {"testset": testset, "values": values, "expected": expected, "row_error": error})
    with transaction.atomic():
        TestSet.objects.select_for_update().filter(pk=testset.pk).first()
        last = testset.cases.aggregate(n=Max("position"))["n"]
        case = TestCase.objects.create(test_set=testset, position=0 if last is None else last + 1, values=values, expected=expected)
        testset.save(update_fields=["updated_at"])
    response = render(request, f"{TESTSET}#row", {"testset": testset, "case": case, "can_edit": True})
    return _with_count(response, testset)


def _with_count(response: HttpResponse, testset: TestSet) -> HttpResponse:
    """The table's "N rows" heading, out of band, after a row came or went."""
    response.content += render_to_string(f"{TESTSET}#count", {"count": testset.cases.count(), "oob": True}).encode()
    return response


@require_POST
def testset_row_delete(request: HttpRequest, public_id, position: int) -> HttpResponse:
    testset = library.visible(TestSet, request.user, public_id, edit=True)
    _case(testset, position).delete()
    testset.save(update_fields=["updated_at"])
    return _with_count(HttpResponse(""), testset)  # the row goes (hx-swap outerHTML with nothing)


@require_POST
def testset_column_add(request: HttpRequest, public_id) -> HttpResponse:
    """A new variable column, with the value every existing row starts with."""
    testset = library.visible(TestSet, request.user, public_id, edit=True)
    form = ColumnForm(request.POST, auto_id="column_%s")
    if form.is_valid():
        name = form.cleaned_data["name"].strip()
        if not valid_name(name) or name == testdata.EXPECTED:
            form.add_error("name", "A variable name: a letter or _, then letters, digits or _ (not “expected”).")
        elif name in testset.variables:
            form.add_error("name", f"The set already has a column “{name}”.")
        else:
            with transaction.atomic():
                testset.variables = [*testset.variables, name]
                testset.save(update_fields=["variables", "updated_at"])
                cases = list(testset.cases.all())
                for case in cases:
                    case.values = {**case.values, name: form.cleaned_data["value"]}
                TestCase.objects.bulk_update(cases, ["values"])
            return render(request, f"{TESTSET}#table", _testset_context(request, testset))
    return render(request, f"{TESTSET}#table", _testset_context(request, testset, column_form=form))


@require_POST
def testset_column_delete(request: HttpRequest, public_id) -> HttpResponse:
    testset = library.visible(TestSet, request.user, public_id, edit=True)
    name = request.POST.get("column", "")
    if name in testset.variables and len(testset.variables) > 1:
        with transaction.atomic():
            testset.variables = [v for v in testset.variables if v != name]
            testset.save(update_fields=["variables", "updated_at"])
            cases = list(testset.cases.all())
            for case in cases:
                case.values = {k: v for k, v in case.values.items() if k != name}
            TestCase.objects.bulk_update(cases, ["values"])
        return render(request, f"{TESTSET}#table", _testset_context(request, testset))
    error = "A test set keeps at least one variable column." if name in testset.variables else "No such column."
    return render(request, f"{TESTSET}#table", _testset_context(request, testset, table_error=error))


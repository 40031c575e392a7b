"""Batch run pages: start one, watch it (progress over the websocket: chat.consumers_batch), read,
rate and annotate its results, compare two runs, export CSV and JSONL, cancel.

Access is a conversation's: the owner and the team it is shared with see a run; only the owner
starts, cancels, rates and annotates; anyone else gets 404.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect
from django.views.decorators.http import require_GET, require_POST

import json

from chat import batch, batch_results, checks, library
from chat.forms_batch import BatchRunForm
from chat.models import BatchResult, BatchRun, TestSet


def visible_run(request: HttpRequest, public_id) -> BatchRun:
    run = (BatchRun.objects.visible_to(request.user).select_related("owner", "team", "conversation")
           .filter(public_id=public_id).first())
    if run is None:
        raise Http404("No such batch run")
    return run


def owned_run(request: HttpRequest, public_id) -> BatchRun:
    run = visible_run(request, public_id)
    if not run.can_edit(request.user):
        raise Http404("No such batch run")  # a teammate who may read it gets the same 404 as a stranger
    return run


@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    runs = BatchRun.objects.visible_to(request.user).select_related("owner", "team")[:200]
    return render(request, "chat/batch_list.html", {"runs": runs})


def run_new(request: HttpRequest) -> HttpResponse:
    """GET: the form (prefilled from ?version= and ?test_set=); POST: check every row, start the run."""
    if request.method == "POST":
        form = BatchRunForm(request.POST, user=request.user)
        if form.is_valid():
            data = form.cleaned_data
            try:
                run = batch.create_run(
                    request.user, version=data["version"], test_set=data["test_set"], endpoints=list(data["endpoints"]),
                    concurrency=data["concurrency"], visibility="team" if data["share"] else "private", team=data["share"],
                )
            except batch.RunInvalid as e:
                form.add_error(None, str(e))
            else:
                return redirect("chat:batch_run", public_id=run.public_id)
        return render(request, "chat/batch_new.html", {"form": form}, status=400)
    if request.method != "GET":
        return HttpResponse(status=405)
    initial = {key: request.GET[key] for key in ("version", "test_set") if request.GET.get(key)}
    return render(request, "chat/batch_new.html", {"form": BatchRunForm(initial=initial, user=request.user)})


@require_GET
def run_page(request: HttpRequest, public_id) -> HttpResponse:
    run = visible_run(request, public_id)
    return render(request, "chat/batch_run.html", batch_results.page_context(run, request.user))


@require_GET
def run_results(request: HttpRequest, public_id) -> HttpResponse:
    """The results table alone (htmx: after a rating, a note)."""
    run = visible_run(request, public_id)
    return render(request, "chat/batch_run.html#results", batch_results.page_context(run, request.user))


@require_POST
def run_cancel(request: HttpRequest, public_id) -> HttpResponse:
    run = owned_run(request, public_id)
    batch.cancel(run)
    if request.htmx:
        run.refresh_from_db()
        return render(request, "chat/batch_run.html#progress", batch_results.page_context(run, request.user))
    return redirect("chat:batch_run", public_id=run.public_id)


@require_POST
def run_delete(request: HttpRequest, public_id) -> HttpResponse:
    """Delete a run (the owner): cancelled first, then its conversation, results and completions."""
    run = owned_run(request, public_id)
    batch.cancel(run)
    run.conversation.delete()  # the run and its results go with it (CASCADE)
    if request.htmx:
        return HttpResponseClientRedirect(reverse("chat:batch_list"))
    return redirect("chat:batch_list")


@require_POST
def result_review(request: HttpRequest, public_id, result_id) -> HttpResponse:
    """A cell's rating (👍 / 👎, again to clear) and note."""
    run = owned_run(request, public_id)
    result = BatchResult.objects.filter(run=run, public_id=result_id).select_related("completion", "message").first()
    if result is None:
        raise Http404("No such result")
    error = batch_results.review(result, rating=request.POST.get("rating"), note=request.POST.get("note"))
    context = {"result": result, "run": run, "can_edit": True, "review_error": error}
    return render(request, "chat/batch_run.html#review", context, status=200)


@require_GET
def run_compare(request: HttpRequest, public_id) -> HttpResponse:
    run = visible_run(request, public_id)
    others = BatchRun.objects.visible_to(request.user).exclude(pk=run.pk).select_related("owner")[:200]
    other = None
    if request.GET.get("with"):
        other = BatchRun.objects.visible_to(request.user).filter(public_id=request.GET["with"]).exclude(pk=run.pk).first() \
            if batch_results.is_uuid(request.GET["with"]) else None
        if other is None:
            raise Http404("No such batch run")
    # The earlier run is A, the later one B: the delta and "fixed" / "broke" read forward in time.
    earlier, later = sorted([run, other], key=lambda r: (r.created_at, r.pk)) if other else (None, None)
    comparison = batch_results.compare(earlier, later) if other else None
    return render(request, "chat/batch_compare.html", {"run": run, "other": other, "others": others, "comparison": comparison,
                                                        "earlier": earlier, "later": later, "show_all": request.GET.get("all") == "1"})


@require_GET
def run_export(request: HttpRequest, public_id, fmt: str) -> HttpResponse:
    run = visible_run(request, public_id)
    rows = batch_results.export_rows(run)
    if fmt == "csv":
        response = StreamingHttpResponse(batch_results.csv_lines(rows), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(batch_results.jsonl_lines(rows), content_type="application/x-ndjson; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="batch-{run.public_id}.{fmt}"'
    return response


# --- a test set's checks (on its page: templates/chat/_testset_checks.html) --------------------------


def checks_context(testset: TestSet, user, **extra) -> dict:
    return {"testset": testset, "can_edit": testset.can_edit(user), "check_labels": [checks.label(c) for c in testset.checks or []],
            "checks_text": json.dumps(testset.checks or [], indent=2, ensure_ascii=False), **extra}


@require_POST
def testset_checks(request: HttpRequest, public_id) -> HttpResponse:
    """Save a test set's checks (the owner): a JSON list, validated; an error keeps the text as typed."""
    testset = library.visible(TestSet, request.user, public_id, edit=True)
    text = request.POST.get("checks", "")
    try:
        value = json.loads(text or "[]")
        checks.validate(value)
    except ValueError as e:  # JSONDecodeError and CheckError alike
        message = str(e) if isinstance(e, checks.CheckError) else f"Not valid JSON: {e}"
        context = checks_context(testset, request.user, checks_error=message + " Nothing was saved.", checks_text=text)
        return render(request, "chat/_testset_checks.html", context)
    testset.checks = value
    testset.save(update_fields=["checks", "updated_at"])
    return render(request, "chat/_testset_checks.html", checks_context(testset, request.user, checks_saved=True))

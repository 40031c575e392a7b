"""The history list: which conversations a user sees under "Mine", "All" or one of their teams, searched and filtered.

Everything in the query string is a name, never an integer key: teams by group name, endpoints by
name, authors by username. The page costs a fixed number of queries whatever the number of
conversations (one COUNT, one page of rows with their endpoint, owner and team joined in).
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.paginator import Page, Paginator
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404

from chat.models import FAMILY_CHOICES, Conversation, Endpoint, Message, Pane

PAGE_SIZE = 25
MAX_QUERY_CHARS = 200


@dataclass(frozen=True)
class Scope:
    key: str  # the ?scope= value: "mine", "all" or "team:<group name>"
    label: str
    team: Group | None = None


class HistoryForm(forms.Form):
    """The search and filter bar. Invalid filters are reported and left out, never a 500."""

    q = forms.CharField(required=False, max_length=MAX_QUERY_CHARS, label="Search")
    scope = forms.CharField(required=False)
    endpoint = forms.ChoiceField(required=False)
    model = forms.ChoiceField(required=False)
    family = forms.ChoiceField(required=False, choices=[("", "Any family"), *FAMILY_CHOICES])
    author = forms.ChoiceField(required=False)
    kind = forms.ChoiceField(required=False, choices=[("", "Any kind"), *Conversation.Kind.choices])
    since = forms.DateField(required=False, label="Active since", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="Active until", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, endpoints: list[Endpoint], authors: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].choices = [("", "Any endpoint")] + [(e.name, e.name) for e in endpoints]
        models = sorted({e.model_id for e in endpoints})
        self.fields["model"].choices = [("", "Any model")] + [(m, m) for m in models]
        self.fields["author"].choices = [("", "Anyone")] + [(name, name) for name in authors]


def user_teams(user) -> list[Group]:
    return list(user.groups.order_by("name"))


def scopes_for(teams: list[Group]) -> list[Scope]:
    return [Scope("mine", "Mine"), Scope("all", "All I can see")] + [
        Scope(f"team:{team.name}", team.name, team) for team in teams
    ]


def pick_scope(key: str, scopes: list[Scope]) -> Scope:
    """The requested scope; a team the user is not in is indistinguishable from one that does not exist."""
    key = key or "mine"
    for scope in scopes:
        if scope.key == key:
            return scope
    raise Http404("No such list")


def scoped(user, scope: Scope, teams: list[Group]) -> QuerySet[Conversation]:
    """Conversations in one scope. Team ids come from the user's own groups, fetched once."""
    conversations = Conversation.objects.all()
    shared = Q(visibility=Conversation.Visibility.TEAM)
    if scope.key == "mine":
        return conversations.filter(owner=user)
    if scope.team is not None:
        return conversations.filter(shared, team=scope.team)
    return conversations.filter(Q(owner=user) | (shared & Q(team__in=[t.pk for t in teams])))


def search(conversations: QuerySet[Conversation], text: str) -> QuerySet[Conversation]:
    """Titles and the shown messages' text, case-insensitively (LIKE on SQLite, UPPER LIKE on PostgreSQL)."""
    text = text.strip()
    if not text:
        return conversations
    in_messages = Message.objects.filter(conversation=OuterRef("pk"), is_active=True, text_index__icontains=text)
    return conversations.filter(Q(title__icontains=text) | Exists(in_messages))


def with_messages(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Only conversations something was said in: *New conversation* clicked and left without
    sending leaves no row. An EXISTS on the (conversation, position) index, probed per row.
    A batch run is listed from the moment it is started, before its first row is answered."""
    return conversations.filter(Q(kind=Conversation.Kind.BATCH) | Exists(Message.objects.filter(conversation=OuterRef("pk"))))


def apply_filters(conversations: QuerySet[Conversation], data: dict) -> QuerySet[Conversation]:
    conversations = search(conversations, data.get("q") or "")
    # A comparison matches an endpoint, a model or a family when any of its panes does.
    for key, field in (("endpoint", "name"), ("model", "model_id"), ("family", "family")):
        if data.get(key):
            panes = Pane.objects.filter(conversation=OuterRef("pk"), **{f"endpoint__{field}": data[key]})
            conversations = conversations.filter(Q(**{f"endpoint__{field}": data[key]}) | Exists(panes))
    if data.get("kind"):
        conversations = conversations.filter(kind=data["kind"])
    if data.get("author"):
        conversations = conversations.filter(owner__username=data["author"])
    if data.get("since"):
        conversations = conversations.filter(updated_at__date__gte=data["since"])
    if data.get("until"):
        conversations = conversations.filter(updated_at__date__lte=data["until"])
    return conversations


def filter_choices(user, teams: list[Group]) -> tuple[list[Endpoint], list[str]]:
    """Endpoints the user may use or that their visible conversations were on; people they share with."""
    # One indexed EXISTS per endpoint (there are few), not a scan of every visible conversation.
    used = scoped(user, Scope("all", ""), teams).filter(endpoint=OuterRef("pk"))
    endpoints = list(
        Endpoint.objects.filter(Q(pk__in=Endpoint.objects.usable_by(user).values("pk")) | Exists(used))
        .only("name", "model_id")
        .order_by("name")
    )
    authors = list(
        get_user_model().objects.filter(Q(pk=user.pk) | Q(groups__in=[t.pk for t in teams]))
        .order_by("username")
        .values_list("username", flat=True)
        .distinct()
    )
    return endpoints, authors


@dataclass
class History:
    form: HistoryForm
    scopes: list[Scope]
    scope: Scope
    page: Page
    query: str  # the filters as a query string (without page), for pagination links
    library: list = ()  # prompts, presets and test sets of the scope matching the search (chat.library)

    @property
    def conversations(self):
        return self.page.object_list


def history_for(request) -> History:
    """Everything the history list shows, for request.GET."""
    user = request.user
    teams = user_teams(user)
    scopes = scopes_for(teams)
    endpoints, authors = filter_choices(user, teams)
    form = HistoryForm(request.GET, endpoints=endpoints, authors=authors)
    form.is_valid()
    data = form.cleaned_data  # valid fields only: a bad filter is dropped and its error shown
    scope = pick_scope(data.get("scope") or "", scopes)
    conversations = with_messages(apply_filters(scoped(user, scope, teams), data)).select_related("endpoint", "owner", "team")
    paginator = Paginator(conversations.order_by("-updated_at", "-pk"), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    from chat.library import library_matches

    library = library_matches(user, scope, teams, data)
    return History(form=form, scopes=scopes, scope=scope, page=page, query=query.urlencode(), library=library)

"""Prompt library rows for page checks (axe): a shared prompt with two versions, a test set, a preset."""

from __future__ import annotations

from chat.models_library import Preset, Prompt, PromptVersion, TestCase, TestSet


def library_pages(owner):
    team = owner.groups.first()
    sharing = {"team": team, "visibility": "team"} if team else {}
    preset = Preset.objects.create(owner=owner, name="Terse answers", values={
        "system_prompt": "Answer in one sentence.", "options": {"temperature": 0.2, "max_tokens": 200},
        "tools": [], "response_format": {"type": "json_object"}, "canned_results": {}}, **sharing)
    prompt = Prompt.objects.create(owner=owner, name="Trip planner", description="A day out", preset=preset, **sharing)
    PromptVersion.objects.create(prompt=prompt, number=1, note="first draft", created_by=owner, messages=[
        {"role": "system", "content": "You plan trips."},
        {"role": "user", "content": "Plan a day in {{city}} in {{month}}."}])
    PromptVersion.objects.create(prompt=prompt, number=2, note="relaxed", created_by=owner, values=preset.values, messages=[
        {"role": "system", "content": "You plan relaxed trips."},
        {"role": "user", "content": "Plan a slow day in {{city}} in {{month}}, with a long lunch and a walk by the water."},
        {"role": "assistant", "content": "Morning: the old town."}])
    testset = TestSet.objects.create(owner=owner, name="Cities", variables=["city", "month"], **sharing)
    TestCase.objects.bulk_create(
        TestCase(test_set=testset, position=i, values={"city": city, "month": month}, expected=f"A day in {city}")
        for i, (city, month) in enumerate([("Kyoto", "May"), ("Lisbon", "October"), ("Reykjavík, a rather long city name", "June")])
    )
    return prompt, testset

"""A finished batch run for the pages' checks (axe, layout): three rows on an endpoint, run by the
real engine (chat.batch.Runner, in a thread of this process) against the live server's simulator,
one check that passes and one that fails; a second run to compare it with."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from chat import batch
from chat.models import Prompt, PromptVersion, TestCase, TestSet


def batched(owner, endpoint):
    prompt = Prompt.objects.create(owner=owner, name="Forecast")
    version = PromptVersion.objects.create(prompt=prompt, number=1, created_by=owner,
                                           messages=[{"role": "user", "content": "Will it rain in {{city}} tomorrow?"}],
                                           values={"options": {"max_tokens": 40}})
    test_set = TestSet.objects.create(owner=owner, name="Three cities", variables=["city"],
                                      checks=[{"kind": "contains", "value": "{{city}}"}, {"kind": "json"}])
    TestCase.objects.bulk_create([TestCase(test_set=test_set, position=i, values={"city": c}, expected="no")
                                  for i, c in enumerate(["Paris", "Lima", "Oslo"])])
    runs = [batch.create_run(owner, version=version, test_set=test_set, endpoints=[endpoint], concurrency=2) for _ in range(2)]
    with ThreadPoolExecutor(1) as pool:
        for run in runs:
            pool.submit(lambda r=run: asyncio.run(batch.Runner(r.pk).run())).result()
    return runs

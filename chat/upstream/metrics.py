"""Server load from vLLM's Prometheus /metrics, parsed with prometheus_client's text parser.

    load = parse_load(text, model="tiny-qwen3")
    load.running, load.waiting, load.kv_cache_usage, load.prefix_cache_hit_rate

vLLM labels its samples by `model_name` (and `engine` when it runs several): the figures are
summed over the engines serving `model` (over all, when no sample names it). The KV-cache gauge
was `vllm:gpu_cache_usage_perc` before vLLM 0.10; both names are read. The prefix-cache hit rate
is hits / queries since the server started (counters), None before the first query.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

from prometheus_client.parser import text_string_to_metric_families

from .errors import UpstreamProtocolError

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
PREFIX_QUERIES = "vllm:prefix_cache_queries_total"
PREFIX_HITS = "vllm:prefix_cache_hits_total"
WANTED = {RUNNING, WAITING, *KV_CACHE, PREFIX_QUERIES, PREFIX_HITS}


@dataclass(frozen=True)
class Load:
    running: int | None
    waiting: int | None
    kv_cache_usage: float | None  # 0..1
    prefix_cache_hit_rate: float | None  # 0..1
    prefix_cache_queries: int | None

    @property
    def empty(self) -> bool:
        return self.running is None and self.waiting is None and self.kv_cache_usage is None

    def as_dict(self) -> dict:
        return asdict(self)


def parse_load(text: str, model: str | None = None) -> Load:
    """The load figures of `model` in a /metrics page; UpstreamProtocolError if it is not Prometheus text."""
    samples: dict[str, list[tuple[dict, float]]] = defaultdict(list)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in WANTED:
                    samples[sample.name].append((sample.labels, sample.value))
    except (ValueError, TypeError, IndexError) as error:
        raise UpstreamProtocolError(f"/metrics is not Prometheus text ({error})") from None

    def total(name: str) -> float | None:
        rows = samples.get(name)
        if not rows:
            return None
        mine = [value for labels, value in rows if labels.get("model_name") == model] if model else []
        return sum(mine if mine else [value for _, value in rows])

    def mean(names) -> float | None:
        for name in names:
            rows = samples.get(name)
            if rows:
                mine = [v for labels, v in rows if labels.get("model_name") == model] if model else []
                values = mine or [v for _, v in rows]
                return sum(values) / len(values)
        return None

    running, waiting = total(RUNNING), total(WAITING)
    queries, hits = total(PREFIX_QUERIES), total(PREFIX_HITS)
    rate = hits / queries if queries and hits is not None else None
    return Load(
        running=None if running is None else int(running),
        waiting=None if waiting is None else int(waiting),
        kv_cache_usage=mean(KV_CACHE),
        prefix_cache_hit_rate=rate,
        prefix_cache_queries=None if queries is None else int(queries),
    )

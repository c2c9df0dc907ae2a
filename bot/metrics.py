"""Prometheus metrics of one bot process, each defined once, in a registry of their own.

A registry per ``Metrics`` (not prometheus-client's global one) lets several bots live in
one process, as tests build them. Nothing here knows Discord: the gateway's latencies come
in as a function that is called at scrape time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Seconds: from a few milliseconds (a classifier on a GPU) to the inference timeout.
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)

# Outcomes of a command: answered, refused with a friendly message (bad input, busy model,
# missing permission...), or failed on an unexpected error (logged with an error id).
COMMAND_OUTCOMES = ("ok", "refused", "failed")

ShardLatencies = Callable[[], Iterable[tuple[int, float]]]


@dataclass(frozen=True, slots=True)
class RoleMetrics:
    """The metrics of one model role, labels already applied (no lookup per request)."""

    queue_depth: Gauge
    in_flight: Gauge
    batch_size: Histogram
    batch_seconds: Histogram
    latency: Histogram
    rejections: Counter
    time_to_first_token: Histogram
    tokens_per_second: Histogram
    generated_tokens: Counter

    def observe_generation(self, seconds: float, tokens: int) -> None:
        """A finished generation: its speed and its tokens."""
        if tokens > 0 and seconds > 0:
            self.tokens_per_second.observe(tokens / seconds)
            self.generated_tokens.inc(tokens)


class _GatewayLatencyCollector(Collector):
    """Each shard's heartbeat latency, read when Prometheus scrapes."""

    def __init__(self) -> None:
        self.latencies: ShardLatencies | None = None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        try:
            # Scrapes run on a thread: a shard (dis)connecting meanwhile may change the dict
            # behind the latencies; this scrape then goes without them, the next one has them.
            latencies = sorted(self.latencies()) if self.latencies is not None else []
        except RuntimeError:
            latencies = []
        for shard_id, seconds in latencies:
            # A shard without a heartbeat answer yet reports inf; Prometheus takes +Inf.
            family.add_metric([str(shard_id)], seconds if not math.isnan(seconds) else math.inf)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "bot_gateway_latency_seconds",
            "Time between a gateway heartbeat and its acknowledgement, per shard",
            labels=["shard"],
        )


class Metrics:
    """Every metric of the bot. Build one per process (or per test bot)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._define_inference()
        self._define_commands()
        self._define_moderation()
        self._gateway = _GatewayLatencyCollector()
        self.registry.register(self._gateway)
        self._roles: dict[str, RoleMetrics] = {}

    def _define_inference(self) -> None:
        registry, role = self.registry, ["role"]
        self.queue_depth = Gauge(
            "bot_inference_queue_depth", "Requests waiting for a model", role, registry=registry
        )
        self.in_flight = Gauge(
            "bot_generation_in_flight",
            "Requests queued or running on a model's continuous batching",
            role,
            registry=registry,
        )
        self.batch_size = Histogram(
            "bot_inference_batch_size",
            "Batch slots in one model run (texts for a classifier, else requests)",
            role,
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "bot_inference_batch_seconds",
            "Time one model run took",
            role,
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            "bot_inference_latency_seconds",
            "Time from a request reaching a model's queue to its result (waiting included)",
            role,
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.rejections = Counter(
            "bot_inference_rejections",
            "Requests refused because the model's queue was full",
            role,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "bot_generation_time_to_first_token_seconds",
            "Time from a streamed generation request to its first token",
            role,
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.tokens_per_second = Histogram(
            "bot_generation_tokens_per_second",
            "Tokens per second of each finished generation, waiting included",
            role,
            buckets=TOKENS_PER_SECOND_BUCKETS,
            registry=registry,
        )
        self.generated_tokens = Counter(
            "bot_generation_tokens", "Tokens generated", role, registry=registry
        )

    def _define_commands(self) -> None:
        registry = self.registry
        self.commands = Counter(
            "bot_commands",
            "Application commands run, by outcome (ok, refused, failed)",
            ["command", "outcome"],
            registry=registry,
        )
        self.acknowledge_seconds = Histogram(
            "bot_command_acknowledge_seconds",
            "Time from receiving a command to acknowledging it (deferring or replying)",
            ["command"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.answer_seconds = Histogram(
            "bot_command_answer_seconds",
            "Time from receiving a command to the end of its answer",
            ["command", "outcome"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )

    def _define_moderation(self) -> None:
        registry = self.registry
        self.moderation_checks = Counter(
            "bot_moderation_checks", "Messages checked by the moderation models", registry=registry
        )
        self.moderation_flags = Counter(
            "bot_moderation_flags",
            "Messages that passed a moderation threshold, by the label that did it",
            ["label"],
            registry=registry,
        )
        self.moderation_actions = Counter(
            "bot_moderation_actions",
            "Actions on flagged messages (dry_run: only recorded), by whether they worked",
            ["action", "outcome"],
            registry=registry,
        )
        self.moderation_decisions = Counter(
            "bot_moderation_decisions",
            "Moderators' decisions on alerts",
            ["decision"],
            registry=registry,
        )

    def role(self, role: str) -> RoleMetrics:
        """The metrics of one model role."""
        found = self._roles.get(role)
        if found is None:
            found = self._roles[role] = RoleMetrics(
                queue_depth=self.queue_depth.labels(role),
                in_flight=self.in_flight.labels(role),
                batch_size=self.batch_size.labels(role),
                batch_seconds=self.batch_seconds.labels(role),
                latency=self.latency.labels(role),
                rejections=self.rejections.labels(role),
                time_to_first_token=self.time_to_first_token.labels(role),
                tokens_per_second=self.tokens_per_second.labels(role),
                generated_tokens=self.generated_tokens.labels(role),
            )
        return found

    def command_finished(
        self, command: str, outcome: str, answer_s: float, acknowledge_s: float | None
    ) -> None:
        """One command ran to its end (``acknowledge_s`` None: it was never acknowledged)."""
        self.commands.labels(command, outcome).inc()
        self.answer_seconds.labels(command, outcome).observe(answer_s)
        if acknowledge_s is not None:
            self.acknowledge_seconds.labels(command).observe(acknowledge_s)

    def watch_gateway(self, latencies: ShardLatencies) -> None:
        """Report ``latencies()`` (shard id, seconds) as each shard's gateway latency."""
        self._gateway.latencies = latencies

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

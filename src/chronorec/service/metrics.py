"""Prometheus text exposition, hand-rolled: request counts, latency histograms, service gauges."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, list[int]] = {}  # route -> cumulative counts per bucket (+Inf)
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.events_ingested = 0
        self.events_duplicate = 0
        self.items_added = 0
        self.reloads = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            counts = self.latency.setdefault(route, [0] * (len(BUCKETS) + 1))
            for i, upper in enumerate(BUCKETS):
                if seconds <= upper:
                    counts[i] += 1
            counts[-1] += 1
            self.latency_sum[route] += seconds

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def render(self, gauges: Callable[[], list[tuple[str, str, dict[str, str], float]]]) -> str:
        """The text format; ``gauges()`` yields (name, help, labels, value) read at scrape time."""
        out: list[str] = []
        with self._lock:
            out += [
                "# HELP chronorec_requests_total HTTP requests by route and status.",
                "# TYPE chronorec_requests_total counter",
            ]
            for (method, route, status), n in sorted(self.requests.items()):
                labels = _labels({"method": method, "route": route, "status": str(status)})
                out.append(f"chronorec_requests_total{labels} {n}")
            out += [
                "# HELP chronorec_request_seconds Request latency by route.",
                "# TYPE chronorec_request_seconds histogram",
            ]
            for route, counts in sorted(self.latency.items()):
                for upper, n in zip((*BUCKETS, "+Inf"), counts, strict=True):
                    labels = _labels({"route": route, "le": str(upper)})
                    out.append(f"chronorec_request_seconds_bucket{labels} {n}")
                out.append(
                    f"chronorec_request_seconds_sum{_labels({'route': route})} "
                    f"{self.latency_sum[route]:.6f}"
                )
                out.append(
                    f"chronorec_request_seconds_count{_labels({'route': route})} {counts[-1]}"
                )
            for counter, help_text, value in (
                ("events_ingested_total", "Events stored.", self.events_ingested),
                ("events_duplicate_total", "Replays of a known event_id.", self.events_duplicate),
                ("items_added_total", "Items added through POST /items.", self.items_added),
                ("reloads_total", "Successful model reloads.", self.reloads),
            ):
                out += [
                    f"# HELP chronorec_{counter} {help_text}",
                    f"# TYPE chronorec_{counter} counter",
                    f"chronorec_{counter} {value}",
                ]
        for gauge, gauge_help, gauge_labels, reading in gauges():
            out += [
                f"# HELP chronorec_{gauge} {gauge_help}",
                f"# TYPE chronorec_{gauge} gauge",
                f"chronorec_{gauge}{_labels(gauge_labels)} {reading}",
            ]
        return "\n".join(out) + "\n"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + body + "}"

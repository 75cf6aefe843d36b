"""Prometheus text exposition of the service's counters, latency histogram and gauges (no client
library: the format is a few lines)."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self._sums: dict[tuple[str, str], float] = defaultdict(float)
        self.events_accepted: dict[str, int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, status)] += 1
            self._buckets[(method, route)][bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sums[(method, route)] += seconds

    def accepted(self, kind: str, count: int) -> None:
        with self._lock:
            self.events_accepted[kind] += count

    def render(self, gauges: dict[str, tuple[str, float | None]]) -> str:
        """The exposition text; `gauges`: name → (help, value), None values left out."""
        out = ["# HELP reco_serve_requests_total HTTP requests by method, route and status.",
               "# TYPE reco_serve_requests_total counter"]  # fmt: skip
        with self._lock:
            for (method, route, status), count in sorted(self._requests.items()):
                labels = f'method="{method}",route="{route}",status="{status}"'
                out.append(f"reco_serve_requests_total{{{labels}}} {count}")
            out += ["# HELP reco_serve_request_seconds Request latency (server side).",
                    "# TYPE reco_serve_request_seconds histogram"]  # fmt: skip
            for (method, route), counts in sorted(self._buckets.items()):
                labels = f'method="{method}",route="{route}"'
                total = 0
                for bound, count in zip([*map(str, BUCKETS), "+Inf"], counts, strict=True):
                    total += count
                    out.append(f'reco_serve_request_seconds_bucket{{{labels},le="{bound}"}} {total}')
                out.append(f"reco_serve_request_seconds_sum{{{labels}}} {self._sums[(method, route)]:.6f}")
                out.append(f"reco_serve_request_seconds_count{{{labels}}} {total}")
            out += ["# HELP reco_serve_events_accepted_total Records landed, by kind.",
                    "# TYPE reco_serve_events_accepted_total counter"]  # fmt: skip
            for kind, count in sorted(self.events_accepted.items()):
                out.append(f'reco_serve_events_accepted_total{{kind="{kind}"}} {count}')
        for name, (text, value) in gauges.items():
            out += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
            if value is not None:
                out.append(f"{name} {value}")
        return "\n".join(out) + "\n"

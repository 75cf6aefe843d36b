"""A small synthetic event stream with a planted preference structure and known defects.

Users belong to taste clusters and mostly pick items of their cluster, with Zipf-like popularity
inside it, so a model can learn something. A fraction of lines is broken (one per quarantine
reason, in turn) and a fraction repeats an earlier event_id, and the generator says exactly how
many of each a correct ingest must find.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from lakehouse.schemas import EVENT_TYPES

BROKEN_LINES = (
    ("malformed_json", lambda e: json.dumps(e)[:-3]),
    ("missing_field:user_id", lambda e: json.dumps({k: v for k, v in e.items() if k != "user_id"})),
    ("bad_type:value", lambda e: json.dumps({**e, "value": "lots"})),
    ("unknown_event_type", lambda e: json.dumps({**e, "event_type": "teleport"})),
    ("bad_timestamp", lambda e: json.dumps({**e, "ts": "1970-01-01T00:00:00Z"})),
    ("oversize", lambda e: json.dumps({**e, "context": {"blob": "x" * 70_000}})),
)


@dataclass
class Expected:
    """What a correct ingest of the generated lines must report."""

    ids: dict[str, set[str]] = field(default_factory=lambda: {"events": set(), "feedback": set()})
    duplicates: int = 0
    quarantine: dict[str, int] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return len(self.ids["events"])

    @property
    def feedback(self) -> int:
        return len(self.ids["feedback"])

    @property
    def lines(self) -> int:
        return self.events + self.feedback + self.duplicates + sum(self.quarantine.values())


@dataclass
class World:
    users: int = 200
    items: int = 500
    clusters: int = 10
    affinity: float = 0.85  # share of a user's events inside their own cluster

    def cluster_of_user(self, user: int) -> int:
        return user % self.clusters

    def cluster_items(self, cluster: int) -> list[int]:
        return list(range(cluster, self.items, self.clusters))


def generate_lines(
    n_events: int,
    world: World | None = None,
    seed: int = 0,
    start: datetime | None = None,
    span: timedelta = timedelta(days=2),
    feedback_share: float = 0.1,
    broken_share: float = 0.0,
    duplicate_share: float = 0.0,
) -> tuple[dict[str, list[str]], Expected]:
    """JSON lines per kind ("events", "feedback") in time order, and what ingest must find."""
    world = world or World()
    rng = random.Random(seed)
    start = start or datetime.now(UTC) - span
    step = span / max(n_events, 1)
    weights = [1.0 / (rank + 1) for rank in range(len(world.cluster_items(0)))]
    lines: dict[str, list[str]] = {"events": [], "feedback": []}
    expected = Expected()
    emitted: list[tuple[str, str]] = []
    for n in range(n_events):
        user = rng.randrange(world.users)
        item = _pick_item(rng, world, user, weights)
        ts = (start + step * n).isoformat().replace("+00:00", "Z")
        event_id = f"{seed}-{n}"
        kind, record = _random_record(rng, n, user, item, ts, event_id, feedback_share)
        roll = rng.random()
        if kind == "events" and roll < broken_share:
            reason, breaker = BROKEN_LINES[len(emitted) % len(BROKEN_LINES)]
            lines[kind].append(breaker(record))
            expected.quarantine[reason] = expected.quarantine.get(reason, 0) + 1
            emitted.append((kind, ""))
            continue
        if emitted and roll < broken_share + duplicate_share:
            earlier_kind, earlier = rng.choice(emitted)
            if earlier:
                lines[earlier_kind].append(earlier)
                expected.duplicates += 1
                continue
        text = json.dumps(record, separators=(",", ":"))
        lines[kind].append(text)
        emitted.append((kind, text))
        expected.ids[kind].add(event_id)
    return lines, expected


def _pick_item(rng: random.Random, world: World, user: int, weights: list[float]) -> int:
    """An item of the user's cluster (with probability `affinity`, else of any cluster), popular
    items (low rank in the cluster) more often."""
    cluster = world.cluster_of_user(user) if rng.random() < world.affinity else rng.randrange(world.clusters)
    items = world.cluster_items(cluster)
    return rng.choices(items, weights=weights[: len(items)])[0]


def _random_record(
    rng: random.Random, n: int, user: int, item: int, ts: str, event_id: str, feedback_share: float
) -> tuple[str, dict]:
    """The n-th record: feedback on a shown list (with probability `feedback_share`) or an event."""
    if rng.random() < feedback_share:
        return "feedback", {
            "event_id": event_id,
            "rec_id": f"rec-{user}-{n // 50}",
            "user_id": f"u{user}",
            "item_id": f"i{item}",
            "action": rng.choice(("impression", "impression", "click", "like", "dismiss")),
            "position": rng.randint(1, 20),
            "model_version": 1,
            "ts": ts,
        }
    event_type = rng.choice(EVENT_TYPES)
    record = {
        "event_id": event_id,
        "user_id": f"u{user}",
        "item_id": f"i{item}",
        "event_type": event_type,
        "ts": ts,
        "session_id": f"s{user}-{n // 100}",
    }
    if event_type == "rating":
        record["value"] = float(rng.randint(1, 5))
    return "events", record

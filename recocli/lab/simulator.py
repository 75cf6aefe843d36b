"""A synthetic world that uses the recommender, so the loop can be closed without real users.

RecSim/RecoGym-style: users and items carry latent taste vectors (drawn around shared taste
clusters); a user's true affinity for an item is
    sigmoid(click_scale * cos(user, item) + click_bias),
and users examine rank r of a shown list with probability 1 / (1 + position_decay * (r - 1)).
Between rounds tastes drift (a `drift` share of each taste vector moves to a random direction)
and new items arrive. Each round the world
  - acts on its own: behaviour events (view, click, like, purchase), items picked in proportion
    to exp(click_scale * cos + popularity), so popular items and good matches come up more;
  - answers served lists (gold/recommendations rows): an impression for every shown item, a click
    with probability examination × affinity, a like after a click with probability affinity, a
    dismiss for an examined item that was not clicked.
Everything is drawn from numpy generators seeded by (seed, round, purpose), and the world is kept
between rounds in one .npz file (no pickles), so the same seed and the same calls give the same
events.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from lakehouse import catalog
from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from lakehouse.files import atomic_file
from lakehouse.landing import write_landing_file
from lakehouse.locks import exclusive_lock
from lakehouse.recommendations import read_run
from recocli.config import SimulateSettings

STATE_FILE = "world.npz"
CLUSTERS = 8
# Settings that shape the world at its creation; the others may change between rounds.
SHAPE_KEYS = ("seed", "users", "items", "dims")
# Shares of engagement types among organic events the user liked the look of.
ENGAGEMENT = (("click", 0.6), ("like", 0.25), ("purchase", 0.15))
EVENTS_PURPOSE, RESPOND_PURPOSE, ADVANCE_PURPOSE = 1, 2, 3
PICK_CHUNK = 4096


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _index(ids: list[str], prefix: str, size: int) -> np.ndarray:
    """'u17' → 17; -1 for ids this world does not know."""
    out = np.full(len(ids), -1, dtype=np.int64)
    for n, text in enumerate(ids):
        if text.startswith(prefix) and text[len(prefix) :].isdigit():
            value = int(text[len(prefix) :])
            if value < size:
                out[n] = value
    return out


@dataclass
class SimWorld:
    settings: SimulateSettings
    users: np.ndarray  # (U, d) unit taste vectors
    items: np.ndarray  # (I, d) unit item vectors
    popularity: np.ndarray  # (I,) log-popularity
    born: np.ndarray  # (I,) round an item arrived in
    activity: np.ndarray  # (U,) how often each user acts (sums to 1)
    centers: np.ndarray  # (CLUSTERS, d) taste clusters that new items are drawn around
    round: int = 0
    responded: list[str] = field(default_factory=list)  # run ids already answered

    # ---- creation and persistence -------------------------------------------------------------
    @classmethod
    def create(cls, settings: SimulateSettings) -> SimWorld:
        settings.check()
        rng = np.random.default_rng([settings.seed, 0, 0])
        d = settings.dims
        centers = _unit(rng.normal(size=(CLUSTERS, d)))
        taste = centers[rng.integers(CLUSTERS, size=settings.users)]
        world = cls(
            settings=dataclasses.replace(settings),
            users=_unit(taste + rng.normal(size=(settings.users, d)) / np.sqrt(d)),
            items=np.zeros((0, d)),
            popularity=np.zeros(0),
            born=np.zeros(0, dtype=np.int64),
            activity=rng.dirichlet(np.full(settings.users, 0.8)),
            centers=centers,
        )
        world._add_items(settings.items, rng)
        return world

    @classmethod
    def open(cls, folder: str | Path, settings: SimulateSettings, reset: bool = False) -> SimWorld:
        """The world saved in `folder`, or a new one from `settings` (always new with `reset`)."""
        path = Path(folder).expanduser() / STATE_FILE
        if reset or not path.exists():
            return cls.create(settings)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(str(arrays.pop("meta")))
        except (OSError, ValueError, KeyError) as exc:
            raise RecoError(
                f"simulator state {path} is unreadable ({exc}): start over with --reset"
            ) from None
        known = {f.name for f in dataclasses.fields(SimulateSettings)}
        saved = SimulateSettings(**{k: v for k, v in meta["settings"].items() if k in known})
        for key in SHAPE_KEYS:
            if getattr(saved, key) != getattr(settings, key):
                raise RecoError(
                    f"the world in {path.parent} was made with simulate.{key} = {getattr(saved, key)}, "
                    f"not {getattr(settings, key)}: use --reset, or another --state folder"
                )
        world = cls(
            settings=dataclasses.replace(settings),
            users=arrays["users"],
            items=arrays["items"],
            popularity=arrays["popularity"],
            born=arrays["born"],
            activity=arrays["activity"],
            centers=arrays["centers"],
            round=int(meta["round"]),
            responded=list(meta["responded"]),
        )
        return world

    def save(self, folder: str | Path) -> Path:
        """One file, written to a temp name and renamed: a killed save leaves the previous world."""
        folder = Path(folder).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "round": self.round,
            "responded": self.responded,
            "settings": dataclasses.asdict(self.settings),
        }
        final = folder / STATE_FILE
        with atomic_file(final) as out:
            np.savez(
                out,
                users=self.users,
                items=self.items,
                popularity=self.popularity,
                born=self.born,
                activity=self.activity,
                centers=self.centers,
                meta=np.array(json.dumps(meta)),
            )
        return final

    # ---- what the world knows -----------------------------------------------------------------
    @property
    def item_ids(self) -> list[str]:
        return [f"i{n}" for n in range(len(self.items))]

    @property
    def user_ids(self) -> list[str]:
        return [f"u{n}" for n in range(len(self.users))]

    def true_affinity(self, user: str | int, items: list[str] | None = None) -> np.ndarray:
        """P(click | examined) of `user` for `items` (all items when None); 0 for unknown items."""
        u = user if isinstance(user, int) else int(_index([user], "u", len(self.users))[0])
        if not 0 <= u < len(self.users):
            raise RecoError(f"unknown simulated user {user!r}")
        scores = self._affinity(self.users[u], self.items)
        if items is None:
            return scores
        index = _index(items, "i", len(self.items))
        return np.where(index >= 0, scores[np.maximum(index, 0)], 0.0)

    def perfect_list(self, user: str | int, k: int) -> list[str]:
        """The k items this user likes best: what a recommender with perfect knowledge would show."""
        order = np.argsort(-self.true_affinity(user), kind="stable")[:k]
        return [f"i{n}" for n in order]

    def _affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        s = self.settings
        return _sigmoid(s.click_scale * (users @ items.T) + s.click_bias)

    def _pair_affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Affinity of users[k] for items[k], for each k."""
        cos = np.sum(self.users[users] * self.items[items], axis=1)
        return _sigmoid(self.settings.click_scale * cos + self.settings.click_bias)

    def _examined(self, rank: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + self.settings.position_decay * (np.maximum(rank, 1) - 1))

    # ---- acting -------------------------------------------------------------------------------
    def behaviour_events(self, n: int, now: datetime) -> list[dict]:
        """`n` organic events (bronze/events contract) spread over the round's span, ending at `now`."""
        if n <= 0:
            return []
        rng = self._rng(EVENTS_PURPOSE)
        users = rng.choice(len(self.users), size=n, p=self.activity)
        picks = np.empty(n, dtype=np.int64)
        for start in range(0, n, PICK_CHUNK):  # a choice among all items per event, in bounded memory
            part = users[start : start + PICK_CHUNK]
            scores = self.settings.click_scale * (self.users[part] @ self.items.T) + self.popularity
            picks[start : start + len(part)] = np.argmax(scores + rng.gumbel(size=scores.shape), axis=1)
        engaged = rng.random(n) < self._pair_affinity(users, picks)
        kinds = rng.choice([k for k, _ in ENGAGEMENT], size=n, p=[p for _, p in ENGAGEMENT])
        span = timedelta(seconds=self.settings.round_span)
        step = span / n
        seed = self.settings.seed
        events = []
        for k in range(n):
            events.append(
                {
                    "event_id": f"sim{seed}-r{self.round}-{k}",
                    "user_id": f"u{users[k]}",
                    "item_id": f"i{picks[k]}",
                    "event_type": str(kinds[k]) if engaged[k] else "view",
                    "ts": _iso(now - span + step * (k + 1)),
                    "session_id": f"sim{seed}-u{users[k]}-r{self.round}",
                }
            )
        return events

    def respond(self, served: pa.Table, now: datetime) -> list[dict]:
        """Feedback (bronze/feedback contract) to served gold/recommendations rows.

        Rows for users or items this world does not know are skipped.
        """
        if served.num_rows == 0:
            return []
        rows = sorted(served.to_pylist(), key=lambda r: (r["run_id"], r["rec_id"], r["rank"], r["item_id"]))
        users = _index([r["user_id"] for r in rows], "u", len(self.users))
        items = _index([r["item_id"] for r in rows], "i", len(self.items))
        known = (users >= 0) & (items >= 0)
        rows = [r for r, ok in zip(rows, known, strict=True) if ok]
        users, items = users[known], items[known]
        if not rows:
            return []
        affinity = self._pair_affinity(users, items)
        ranks = np.array([r["rank"] for r in rows])
        # Keyed by round, not by the (time-stamped) run id: the same lists get the same answers,
        # so a demo with a fixed seed is reproducible.
        rng = self._rng(RESPOND_PURPOSE)
        examined = rng.random(len(rows)) < self._examined(ranks)
        clicked = examined & (rng.random(len(rows)) < affinity)
        liked = clicked & (rng.random(len(rows)) < affinity)
        feedback = []
        for n, row in enumerate(rows):
            actions = ["impression"]
            if clicked[n]:
                actions += ["click", "like"] if liked[n] else ["click"]
            elif examined[n]:
                actions.append("dismiss")
            for step, action in enumerate(actions):
                feedback.append(
                    {
                        "event_id": f"simfb-{row['rec_id']}-{row['item_id']}-{action}",
                        "rec_id": row["rec_id"],
                        "user_id": row["user_id"],
                        "item_id": row["item_id"],
                        "action": action,
                        "position": int(row["rank"]),
                        "model_version": row.get("model_version"),
                        "ts": _iso(now - timedelta(seconds=3 - step)),
                    }
                )
            if clicked[n]:
                self.popularity[items[n]] += 0.01  # attention feeds popularity
        return feedback

    def advance(self) -> None:
        """End the round: tastes drift, new items arrive."""
        rng = self._rng(ADVANCE_PURPOSE)
        drift = min(max(self.settings.drift, 0.0), 1.0)
        if drift:
            noise = _unit(rng.normal(size=self.users.shape))
            self.users = _unit((1 - drift) * self.users + drift * noise)
        self.round += 1
        self._add_items(self.settings.new_items_per_round, rng)

    def _add_items(self, count: int, rng: np.random.Generator) -> None:
        if count <= 0:
            return
        d = self.items.shape[1]
        clusters = rng.integers(CLUSTERS, size=count)
        vectors = _unit(self.centers[clusters] + rng.normal(size=(count, d)) / np.sqrt(d))
        self.items = np.vstack([self.items, vectors])
        self.popularity = np.concatenate([self.popularity, rng.normal(0.0, 1.0, size=count)])
        self.born = np.concatenate([self.born, np.full(count, self.round, dtype=np.int64)])

    def _rng(self, purpose: int, *keys: str) -> np.random.Generator:
        return np.random.default_rng([self.settings.seed, self.round, purpose, *map(_stable_int, keys)])


def click_through(feedback: list[dict]) -> float:
    """Clicks per impression."""
    shown = sum(1 for f in feedback if f["action"] == "impression")
    return sum(1 for f in feedback if f["action"] == "click") / shown if shown else 0.0


def served_table(
    lists: dict[str, list[str]],
    run_id: str,
    model_version: int | None = None,
    generated_at: datetime | None = None,
) -> pa.Table:
    """gold/recommendations rows for {user: [item, …]} (for tests, and to replay a policy)."""
    now = generated_at or datetime.now(UTC)
    rows = [
        {
            "run_id": run_id,
            "rec_id": f"{run_id}-{user}",
            "user_id": user,
            "rank": rank,
            "item_id": item,
            "score": float(len(items) - rank),
            "model_version": model_version,
            "strategy": "model",
            "generated_at": now,
        }
        for user, items in lists.items()
        for rank, item in enumerate(items, start=1)
    ]
    return pa.Table.from_pylist(rows, schema=catalog.RECOMMENDATIONS.schema)


@dataclass
class RoundReport:
    round: int
    events: int
    feedback: dict[str, int]
    answered_run: str | None
    note: str
    items: int
    files: list[str]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def run_round(
    settings: SimulateSettings,
    landing: str | Path,
    events: int,
    warehouse: Warehouse | None = None,
    now: datetime | None = None,
    reset: bool = False,
    send_feedback: Callable[[list[dict]], None] | None = None,
) -> RoundReport:
    """One round: answer the latest served run (when a warehouse is given), act, advance, save.
    The answers go to `send_feedback` when given (the demo POSTs them to `reco serve`), else into a
    landing file."""
    state = Path(settings.state).expanduser()
    now = now or datetime.now(UTC)
    with exclusive_lock(state / ".lock", "reco simulate"):
        world = SimWorld.open(state, settings, reset=reset)
        tag = f"sim{settings.seed}-r{world.round:06d}"
        files, counts, answered, note = [], {}, None, ""
        if warehouse is not None:
            served = read_run(warehouse)
            if served is None:
                note = "no served lists in gold/recommendations yet"
            elif (run := served["run_id"][0].as_py()) in world.responded:
                note = f"run {run} was answered in an earlier round"
            else:
                feedback = world.respond(served, now)
                world.responded.append(run)
                answered = run
                for f in feedback:
                    counts[f["action"]] = counts.get(f["action"], 0) + 1
                if feedback and send_feedback is not None:
                    send_feedback(feedback)
                elif feedback:
                    files.append(str(write_landing_file(landing, "feedback", f"{tag}.jsonl", feedback)))
                else:
                    note = f"run {run} shows no user or item of this world"
        behaviour = world.behaviour_events(events, now)
        if behaviour:
            files.append(str(write_landing_file(landing, "events", f"{tag}.jsonl", behaviour)))
        report = RoundReport(world.round, len(behaviour), counts, answered, note, len(world.items), files)
        world.advance()
        world.save(state)
    return report

"""Prequential (test-then-train) evaluation: the real-time claim, measured on the same windows.

Events in time order; the rankers (recocli.recommend.ranker: the ranker `reco recommend` serves)
bootstrap on the first part as `reco train --full` does, the rest is replayed window by window.
For every window, each strategy first ranks for every user active in it (from what happened
before the window only) and is scored against the new items each user then took; only then may
it learn from the window:

  stale        the bootstrap ranker, never updated
  incremental  per window what `reco train` does with a micro-batch: choose the half-life and
               weight on the window, fine-tune on it, add it to the decayed counts
  retrain      a full `reco train --full` every `retrain_every` windows
  popular      positives in the trailing `popular_window` before the window, recounted per window

and popularity decayed at half-lives of 1 day to all time (the peers of `--protocol served`),
with each strategy's NDCG@10 over the best of them in hindsight (`ratios`).

Ablations ride along at no training cost: each model strategy at blend weight 0 (`-noblend`, the
model alone), the incremental ranker's decayed popularity alone (`prior`), and `chance` (every
candidate tied: the exact expectation of a random ranking: the floor a leak-free evaluation of an
unlearnable stream shows).

Users active in a window with history before it are warm, the others cold; both are reported.
A strategy that has learned anything from a window's time before scoring it is a bug: every
scoring checks the strategy's real state (the newest event its model and counts hold).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from lakehouse.errors import RecoError
from recocli.config import Settings
from recocli.lab.evaluate import blend_info, check_models, metrics
from recocli.lab.evaluate.peers import (
    catalog_ids,
    decayed_popularity,
    over_best_popularity,
    popularity,
    to_catalog,
)
from recocli.lab.evaluate.source import Source
from recocli.lab.evaluate.split import Window, bootstrap_cut, prequential_windows, windows_line
from recocli.models import KINDS
from recocli.models.prior import half_life_name
from recocli.models.vocab import Vocabulary
from recocli.recommend.history import seen_items
from recocli.recommend.ranker import Ranker
from recocli.training.rank import fit_ranker, learn_batch

MODES = ("stale", "incremental", "retrain")
Log = Callable[[str], None]


def iso(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC).isoformat().replace("+00:00", "Z")


def _positives(rows: pa.Table) -> pa.Table:
    return rows.filter(pc.equal(rows["label"], 1))


@dataclass(frozen=True)
class Strategy:
    """A model kind and how its ranker learns over the windows (one of MODES)."""

    kind: str
    mode: str

    def name(self, kinds: list[str]) -> str:
        return self.mode if len(kinds) == 1 else f"{self.kind}:{self.mode}"


@dataclass
class Runner:
    """A strategy's ranker, the settings it trains with, and its compute time."""

    strategy: Strategy
    ranker: Ranker
    settings: Settings
    seconds: float = 0.0

    def trained_through(self) -> int:
        """The newest event time (µs) anything in this ranker learned from."""
        hist = self.ranker.model.hist_ts
        newest = int(hist.max()) if hist.numel() else -1
        counts = [p.now_us for p in self.ranker.state.priors.values() if p.now_us is not None]
        return max([newest, *counts])


def copy_ranker(ranker: Ranker) -> Ranker:
    return Ranker(copy.deepcopy(ranker.model), copy.deepcopy(ranker.vocabs), ranker.state.copy())


@dataclass
class Scored:
    """Per-user metric arrays of one strategy, gathered over windows."""

    per_user: dict[str, list[np.ndarray]] = field(default_factory=dict)
    warm: list[np.ndarray] = field(default_factory=list)

    def add(self, values: dict[str, np.ndarray], warm: np.ndarray) -> None:
        for name, array in values.items():
            self.per_user.setdefault(name, []).append(array)
        self.warm.append(warm)

    def summary(self, names: list[str]) -> dict[str, float | None]:
        if not self.warm:
            return {}
        warm = np.concatenate(self.warm)
        out: dict[str, float | None] = {}
        for name in names:
            values = np.concatenate(self.per_user[name])
            out[name] = metrics.mean(values)
            out[f"warm_{name}"] = metrics.mean(values[warm])
            out[f"cold_{name}"] = metrics.mean(values[~warm])
        out["users"] = len(warm)
        out["warm_users"] = int(warm.sum())
        out["cold_users"] = int((~warm).sum())
        return out


@dataclass
class WindowTargets:
    users: list[str]
    relevant: Tensor  # [B, R] catalog rows (PAD: item not in the catalog yet — a miss for everyone)
    n_relevant: np.ndarray  # [B]
    exclude: Tensor  # [B, S]
    warm: np.ndarray  # [B] bool
    new_item_share: float  # share of relevant items that were not in the catalog
    item_ids: list[str]  # every relevant item (one per user and item)


def window_targets(
    rows: pa.Table, history: pa.Table, catalog: Vocabulary, known_users: set[str]
) -> WindowTargets:
    """Who is scored in a window and against what: users with at least one positive in the window
    on an item they never interacted with before it; those items are relevant."""
    pos = _positives(rows)
    users = sorted(set(rows["user_id"].to_pylist()))
    exclude = seen_items(history, users, catalog)
    slot = {u: n for n, u in enumerate(users)}
    seen = [set(row[row >= 0].tolist()) for row in exclude.numpy()]
    cat_rows = catalog.rows(pos["item_id"])
    wanted: list[dict[str, int]] = [{} for _ in users]
    for user, item, row in zip(pos["user_id"].to_pylist(), pos["item_id"].to_pylist(), cat_rows, strict=True):
        s = slot[user]
        if row >= 0 and int(row) in seen[s]:
            continue
        wanted[s].setdefault(item, int(row))
    keep = [n for n, w in enumerate(wanted) if w]
    relevant = metrics.padded([list(wanted[n].values()) for n in keep])
    n_relevant = np.array([len(wanted[n]) for n in keep], dtype=np.int64)
    total = int(n_relevant.sum())
    outside = int((relevant < 0).sum()) - int(sum(relevant.shape[1] - len(wanted[n]) for n in keep))
    return WindowTargets(
        users=[users[n] for n in keep],
        relevant=relevant,
        n_relevant=n_relevant,
        exclude=exclude[keep] if len(keep) else exclude[:0],
        warm=np.array([users[n] in known_users for n in keep], dtype=bool),
        new_item_share=outside / total if total else 0.0,
        item_ids=[item for n in keep for item in wanted[n]],
    )


def evaluate_window(scores: Tensor, targets: WindowTargets, ks: tuple[int, ...]) -> dict[str, np.ndarray]:
    per_user, _ = metrics.evaluate_scores(scores, targets.relevant, targets.exclude, ks, targets.n_relevant)
    return {k: v for k, v in per_user.items() if k.startswith(("hr@", "ndcg@", "recall@"))}


@dataclass
class PrequentialResult:
    dataset: str
    seed: int
    ks: tuple[int, ...]
    model_kinds: list[str]
    config: dict
    data: dict = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)
    windows: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    blend: dict = field(default_factory=dict)
    ratios: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "protocol": "prequential",
            "dataset": self.dataset,
            "seed": self.seed,
            "ks": list(self.ks),
            "config": self.config,
            "data": self.data,
            "models": self.models,
            "strategies": {"names": list(self.models), "blend": self.blend, "windows": self.windows},
            "seconds": self.seconds,
            "ratios": self.ratios,
        }


def _rank_settings(settings: Settings) -> dict[str, object]:
    """[rank] as JSON holds it: lists of half-lives and weights as written ('all', 'inf')."""
    cfg = settings.rank
    return {
        "half_lives": [str(h) for h in cfg.half_lives],
        "weights": [str(w) for w in cfg.weights],
        "choose_share": cfg.choose_share,
        "age_weights": list(cfg.age_weights),
        "choose_users": cfg.choose_users,
        "choose_scores": cfg.choose_scores,
    }


def _check(models: list[str], retrain_every: int) -> list[str]:
    """The model kinds asked for (RecoError on a model prequential does not run)."""
    check_models("prequential", models)
    if retrain_every < 1:
        raise RecoError("--retrain-every must be at least 1")
    return [m for m in models if m in KINDS]


def _bootstrap(
    kinds: list[str], data: pa.Table, cut: int, own: dict[str, Settings], seed: int, result, log: Log
) -> list[Runner]:
    """One ranker per kind on the rows before the cut (as `reco train --full`), copied per mode."""
    runners = []
    for kind in kinds:
        log(f"{kind}: bootstrap on {cut} interactions")
        clock = time.perf_counter()
        ranker, _ = fit_ranker(kind, data.slice(0, cut), own[kind], seed=seed, progress=False)
        state = ranker.state
        unknown = ""
        if state.cold_half_life_s is not None:
            cold = half_life_name(state.cold_half_life_s)
            unknown = f"; unknown users {cold}, age weight {state.cold_age_weight:g}"
        log(
            f"{kind}: half-life {half_life_name(state.half_life_s)}, blend weight {state.weight:g}, "
            f"age weight {state.age_weight:g}{unknown}"
        )
        result.blend[kind] = {
            **blend_info(state.half_life_s, state.weight, state.age_weight),
            "validation_ndcg@10": {k: f["ndcg@10"] for k, f in state.figures.items()},
        }
        result.seconds[f"{kind}:bootstrap"] = round(time.perf_counter() - clock, 3)
        runners += [Runner(Strategy(kind, mode), copy_ranker(ranker), own[kind]) for mode in MODES]
    return runners


def _rank_window(
    runners: list[Runner], kinds: list[str], targets: WindowTargets, history: pa.Table, window: Window, ids
) -> dict[str, tuple[Tensor, int | None]]:
    """Each runner's blended and model-alone scores on the catalog, and what it was trained through."""
    out: dict[str, tuple[Tensor, int | None]] = {}
    for runner in runners:
        name = runner.strategy.name(kinds)
        through = runner.trained_through()
        if through >= window.start:
            raise AssertionError(f"{name} learned from {iso(through)} before scoring window {window.index}")
        index = runner.ranker.vocabs.items.rows(ids)
        raw, has = runner.ranker.model_scores(targets.users, history)
        for suffix, weight in (("", runner.ranker.state.weight), ("-noblend", 0.0)):
            out[f"{name}{suffix}"] = (to_catalog(runner.ranker.blended(raw, has, weight)[0], index), through)
        if runner.strategy.mode == "incremental" and runner.strategy.kind == kinds[0]:
            out["prior"] = (to_catalog(runner.ranker.blended(raw, has, math.inf)[0], index), through)
    return out


def _learn(
    runners: list[Runner], data: pa.Table, window: Window, n: int, last: bool, seed: int, log: Log
) -> None:
    """Then each strategy learns from the window (or not), as its mode says."""
    rows = data.slice(window.lo, window.rows)
    for runner in runners:
        clock = time.perf_counter()
        strategy, cfg = runner.strategy, runner.settings.evaluate
        if strategy.mode == "incremental":
            learn_batch(runner.ranker, rows, runner.settings, seed=seed + n + 1)
        elif strategy.mode == "retrain" and (n + 1) % cfg.retrain_every == 0 and not last:
            seen = data.slice(0, window.hi)
            runner.ranker, _ = fit_ranker(strategy.kind, seen, runner.settings, seed=seed, progress=False)
            log(
                f"{strategy.kind}:{strategy.mode}: retrained on {seen.num_rows} interactions after window {n}"
            )
        runner.seconds += time.perf_counter() - clock


def run_prequential(
    source: Source,
    settings: Settings,
    models: list[str],
    ks: tuple[int, ...],
    seed: int,
    log: Log = lambda message: None,
    on_window: Callable[[int, int], None] | None = None,
    model_settings: dict[str, Settings] | None = None,
) -> PrequentialResult:
    """Every strategy over the same windows (see the module docstring). `model_settings`: settings
    for some model kinds (their own training config), else `settings`."""
    started = time.perf_counter()
    cfg = settings.evaluate
    kinds = _check(models, cfg.retrain_every)
    data = source.interactions
    ts = data["ts"].cast(pa.int64()).to_numpy()
    cut = bootstrap_cut(ts, cfg.bootstrap)
    windows = prequential_windows(ts, cut, cfg.window)
    if not windows:
        raise RecoError("nothing after the bootstrap cut to evaluate: lower --bootstrap")
    result = PrequentialResult(
        source.name, seed, ks, kinds,
        {"bootstrap": cfg.bootstrap, "window": cfg.window, "retrain_every": cfg.retrain_every,
         "popular_window": str(cfg.popular_window), "rank": _rank_settings(settings)},
    )  # fmt: skip
    result.data = {"interactions": data.num_rows, "bootstrap_interactions": cut,
                   "bootstrap_until": iso(int(ts[cut])), "windows": len(windows)}  # fmt: skip
    log(f"{source.name}: {windows_line(windows, cfg.window)}")
    own = {kind: (model_settings or {}).get(kind, settings) for kind in kinds}
    runners = _bootstrap(kinds, data, cut, own, seed, result, log)
    replay = _Replay(data, cut, ks, cfg.popular_window)
    for n, window in enumerate(windows):
        result.windows.append(replay.score(window, runners, kinds))
        if on_window:
            on_window(n + 1, len(windows))
        replay.advance(window)
        _learn(runners, data, window, n, n + 1 == len(windows), seed, log)
    compute = {r.strategy.name(kinds): r.seconds for r in runners} | replay.seconds
    for name, values in replay.scored.items():
        result.models[name] = values.summary(replay.metric_names)
        result.models[name]["seconds"] = round(compute.get(name.removesuffix("-noblend"), 0.0), 3)
    result.ratios = over_best_popularity(result.models, [r.strategy.name(kinds) for r in runners], ks[0])
    result.seconds.update({name: round(value, 3) for name, value in compute.items()})
    result.seconds["total"] = round(time.perf_counter() - started, 3)
    result.data["scored_user_windows"] = sum(w["users"] for w in result.windows)
    for key in ("new_item_share", "new_since_bootstrap_share"):
        result.data[key] = _weighted_share(result.windows, key)
    return result


class _Replay:
    """What the windows share: the catalog and users so far, the peers, the scores gathered."""

    def __init__(self, data: pa.Table, cut: int, ks: tuple[int, ...], popular_s: float) -> None:
        self.data, self.ks, self.popular_s = data, ks, popular_s
        self.catalog = Vocabulary()
        self.catalog.add(data.slice(0, cut)["item_id"])
        self.bootstrap_items = set(self.catalog.ids(range(len(self.catalog))))
        self.known_users = set(data.slice(0, cut)["user_id"].to_pylist())
        self.scored: dict[str, Scored] = {}
        self.metric_names = [f"{m}@{k}" for k in ks for m in ("hr", "ndcg", "recall")]
        self.seconds = {"popular": 0.0, "prior": 0.0}

    def score(self, window: Window, runners: list[Runner], kinds: list[str]) -> dict:
        """Every strategy and peer on the window's users, before anything learns from it."""
        history, rows = self.data.slice(0, window.lo), self.data.slice(window.lo, window.rows)
        targets = window_targets(rows, history, self.catalog, self.known_users)
        row: dict = {
            "window": window.index, "start": iso(window.start), "end": iso(window.end),
            "events": window.rows, "users": len(targets.users), "warm_users": int(targets.warm.sum()),
            "new_item_share": round(targets.new_item_share, 4),
            "new_since_bootstrap_share": round(_share_outside(targets.item_ids, self.bootstrap_items), 4),
            "strategies": {},
        }  # fmt: skip
        if not targets.users:
            return row
        results = _rank_window(runners, kinds, targets, history, window, catalog_ids(self.catalog))
        clock = time.perf_counter()
        pop = popularity(history, self.catalog, self.popular_s)
        self.seconds["popular"] += time.perf_counter() - clock
        results["popular"] = (pop[None, :].expand(len(targets.users), -1), int(window.start) - 1)
        clock = time.perf_counter()
        decayed = decayed_popularity(history, self.catalog, window.start)
        share = (time.perf_counter() - clock) / len(decayed)  # one pass builds them all: equal shares
        for name, scores in decayed.items():
            self.seconds[name] = self.seconds.get(name, 0.0) + share
            results[name] = (scores.expand(len(targets.users), -1), int(window.start) - 1)
        # Chance: every candidate tied, so each metric is its expectation under a random ranking.
        results["chance"] = (torch.zeros(len(targets.users), len(self.catalog)), None)
        for name, (scores, through) in results.items():
            values = evaluate_window(scores, targets, self.ks)
            self.scored.setdefault(name, Scored()).add(values, targets.warm)
            summary = {m: metrics.mean(values[m]) for m in self.metric_names}
            row["strategies"][name] = summary | {"trained_through": iso(through)}
        return row

    def advance(self, window: Window) -> None:
        rows = self.data.slice(window.lo, window.rows)
        self.catalog.add(rows["item_id"])
        self.known_users.update(rows["user_id"].to_pylist())


def _share_outside(items: list[str], known: set[str]) -> float:
    return sum(item not in known for item in items) / len(items) if items else 0.0


def _weighted_share(windows: list[dict], key: str) -> float:
    users = sum(w["users"] for w in windows)
    return round(sum(w[key] * w["users"] for w in windows) / users, 4) if users else 0.0

"""Prequential (test-then-train) evaluation: the real-time claim, measured on the same windows.

Events in time order; the models bootstrap on the first part, the rest is replayed window by
window. For every window, each strategy first recommends for every user active in it (from what
happened before the window only) and is scored against the new items each user then took; only
then may it learn from the window:

  stale        the bootstrap model (weights and prior), never updated
  incremental  one fine-tune per window (recocli.training.fit.fine_tune, as `reco train` does) and
               an O(window) update of its recency-popularity prior
  retrain      a full retrain from scratch (and a rebuilt prior) every `retrain_every` windows
  popular      positives in the trailing `popular_window` before the window, recounted per window

Ablations ride along at no training cost: each model strategy without the prior blend
(`-noblend`), the recency prior alone (`prior`), and `chance` (every candidate tied: the exact
expectation of a random ranking: the floor a leak-free evaluation of an unlearnable stream shows).
The blend weight and the prior's half-life are chosen once, on the last windows before the
bootstrap cut (see `_bootstrap`).

Users active in a window with history before it are warm, the others cold; both are reported.
A strategy that has learned anything from a window's time before scoring it is a bug: every
scoring checks the strategy's real state (the newest event its model and prior hold).
"""

from __future__ import annotations

import copy
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
from recocli.lab.evaluate import check_models, metrics
from recocli.lab.evaluate.peers import catalog_ids, popularity, to_catalog
from recocli.lab.evaluate.source import Source
from recocli.lab.evaluate.split import bootstrap_cut, prequential_windows, validation_windows
from recocli.models import KINDS
from recocli.models.base import Recommender
from recocli.models.prior import RecencyPrior, blend, choose_blend
from recocli.models.vocab import Vocabs, Vocabulary
from recocli.recommend.history import score_users, seen_items
from recocli.training.fit import fine_tune, fit_full

STRATEGIES = ("stale", "incremental", "retrain", "popular")
Log = Callable[[str], None]


def iso(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC).isoformat().replace("+00:00", "Z")


def _positives(rows: pa.Table) -> pa.Table:
    return rows.filter(pc.equal(rows["label"], 1))


def build_prior(rows: pa.Table, vocabs: Vocabs, half_life_s: float) -> RecencyPrior:
    """A recency prior over `vocabs` rows from the positives in `rows`."""
    prior = RecencyPrior(len(vocabs.items), half_life_s)
    update_prior(prior, rows, vocabs)
    return prior


def update_prior(prior: RecencyPrior, rows: pa.Table, vocabs: Vocabs) -> None:
    pos = _positives(rows)
    items = vocabs.items.rows(pos["item_id"])
    known = items >= 0
    prior.grow(len(vocabs.items))
    prior.update(items[known], pos["ts"].cast(pa.int64()).to_numpy()[known], pos["weight"].to_numpy()[known])


@dataclass
class ModelState:
    """A model, its vocabularies and its prior: what a model strategy serves from."""

    model: Recommender
    vocabs: Vocabs
    prior: RecencyPrior

    def copy(self) -> ModelState:
        return ModelState(copy.deepcopy(self.model), copy.deepcopy(self.vocabs), self.prior.copy())

    def trained_through(self) -> int:
        """The newest event time (µs) anything in this state learned from."""
        hist = self.model.hist_ts
        newest = int(hist.max()) if hist.numel() else -1
        return max(newest, self.prior.now_us if self.prior.now_us is not None else -1)

    def scores(self, users: list[str], history: pa.Table, weights: list[float]) -> dict[float, Tensor]:
        """Blended scores [B, model items] per blend weight (cold users: the prior alone)."""
        raw, has = score_users(self.model, self.vocabs, history, users)
        log_prior = self.prior.log_prob(raw.shape[1])
        return {w: blend(raw, log_prior, w, has) for w in weights}


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
        }


def _name(kind: str, strategy: str, kinds: list[str]) -> str:
    return strategy if len(kinds) == 1 else f"{kind}:{strategy}"


@dataclass
class Bootstrap:
    state: ModelState
    weight: float
    half_life_s: float
    tried: dict[str, float]
    seconds: float


def _bootstrap(
    kind: str, data: pa.Table, ts: np.ndarray, cut: int, settings: Settings, seed: int
) -> Bootstrap:
    """The bootstrap model and its blend: fit on the rows before the validation windows, then run
    those windows as incremental does (score, then fine-tune and update the priors), scoring every
    (half-life, weight) pair; the best pair on their pooled users' NDCG@10 is kept. The model has
    then seen everything up to the cut."""
    clock = time.perf_counter()
    cfg = settings.evaluate
    half_lives, weights = list(cfg.prior_half_life), list(cfg.prior_weights)
    vals = validation_windows(ts, cut, cfg.window, cfg.validation_windows)
    first = data.slice(0, vals[0].lo if vals else cut)
    model, vocabs, _ = fit_full(kind, first, settings, seed=seed, progress=False)
    priors = {h: build_prior(first, vocabs, h) for h in half_lives}
    per_pair: dict[tuple[float, float], list[np.ndarray]] = {(h, w): [] for h in half_lives for w in weights}
    catalog = Vocabulary()
    catalog.add(first["item_id"])
    known = set(first["user_id"].to_pylist())
    for n, val in enumerate(vals):
        history, rows = data.slice(0, val.lo), data.slice(val.lo, val.rows)
        targets = window_targets(rows, history, catalog, known)
        if targets.users and len(per_pair) > 1:
            raw, has = score_users(model, vocabs, history, targets.users)
            index = vocabs.items.rows(catalog_ids(catalog))
            for h, prior in priors.items():
                log_prior = prior.log_prob(raw.shape[1])
                for w in weights:
                    scores = to_catalog(blend(raw, log_prior, w, has), index)
                    per_pair[(h, w)].append(evaluate_window(scores, targets, (10,))["ndcg@10"])
        catalog.add(rows["item_id"])
        known.update(rows["user_id"].to_pylist())
        fine_tune(model, vocabs, rows, None, settings, seed=seed + 10_000 + n)
        for prior in priors.values():
            update_prior(prior, rows, vocabs)

    def quality(h: float, w: float) -> float:
        values = per_pair[(h, w)]
        return (metrics.mean(np.concatenate(values)) or 0.0) if values else 0.0

    half_life, weight, tried = choose_blend(quality, half_lives, weights)
    return Bootstrap(
        ModelState(model, vocabs, priors[half_life]), weight, half_life, tried, time.perf_counter() - clock
    )


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
    kinds = [m for m in models if m in KINDS]
    check_models("prequential", models)
    if cfg.retrain_every < 1:
        raise RecoError("--retrain-every must be at least 1")
    popular_s = cfg.popular_window
    data = source.interactions
    ts = data["ts"].cast(pa.int64()).to_numpy()
    cut = bootstrap_cut(ts, cfg.bootstrap)
    windows = prequential_windows(ts, cut, cfg.window)
    if not windows:
        raise RecoError("nothing after the bootstrap cut to evaluate: lower --bootstrap")
    result = PrequentialResult(
        source.name, seed, ks, kinds,
        {"bootstrap": cfg.bootstrap, "window": cfg.window, "retrain_every": cfg.retrain_every,
         "popular_window": str(cfg.popular_window),
         "prior_half_life": ",".join(str(h) for h in cfg.prior_half_life)},
    )  # fmt: skip
    result.data = {
        "interactions": data.num_rows,
        "bootstrap_interactions": cut,
        "bootstrap_until": iso(int(ts[cut])),
        "windows": len(windows),
    }

    # ---- bootstrap ----
    states: dict[str, ModelState] = {}
    weights: dict[str, float] = {}
    compute: dict[str, float] = {}
    half_lives: dict[str, float] = {}
    own = {kind: (model_settings or {}).get(kind, settings) for kind in kinds}
    for kind in kinds:
        log(f"{kind}: bootstrap on {cut} interactions")
        boot = _bootstrap(kind, data, ts, cut, own[kind], seed)
        log(f"{kind}: prior half-life {boot.half_life_s / 86400:g}d, blend weight {boot.weight}")
        result.blend[kind] = {
            "weight": boot.weight,
            "half_life_days": boot.half_life_s / 86400,
            "validation_ndcg@10": boot.tried,
        }
        result.seconds[f"{kind}:bootstrap"] = round(boot.seconds, 3)
        weights[kind], half_lives[kind] = boot.weight, boot.half_life_s
        for strategy in ("stale", "incremental", "retrain"):
            states[_name(kind, strategy, kinds)] = boot.state.copy()
            compute[_name(kind, strategy, kinds)] = 0.0
    prior_half_life = half_lives[kinds[0]] if kinds else cfg.prior_half_life[0]
    prior_only = RecencyPrior(0, prior_half_life)
    prior_vocabs = Vocabs()
    prior_vocabs.items.add(data.slice(0, cut)["item_id"])
    update_prior(prior_only, data.slice(0, cut), prior_vocabs)
    compute["popular"] = compute["prior"] = 0.0

    catalog = Vocabulary()
    catalog.add(data.slice(0, cut)["item_id"])
    bootstrap_items = set(catalog.ids(range(len(catalog))))
    known_users = set(data.slice(0, cut)["user_id"].to_pylist())
    scored: dict[str, Scored] = {}
    metric_names = [f"{m}@{k}" for k in ks for m in ("hr", "ndcg", "recall")]

    for n, window in enumerate(windows):
        history = data.slice(0, window.lo)
        rows = data.slice(window.lo, window.rows)
        targets = window_targets(rows, history, catalog, known_users)
        row: dict = {
            "window": window.index, "start": iso(window.start), "end": iso(window.end),
            "events": window.rows, "users": len(targets.users), "warm_users": int(targets.warm.sum()),
            "new_item_share": round(targets.new_item_share, 4),
            "new_since_bootstrap_share": round(_share_outside(targets.item_ids, bootstrap_items), 4),
            "strategies": {},
        }  # fmt: skip
        if targets.users:
            ids = catalog_ids(catalog)
            results: dict[str, tuple[Tensor, int | None]] = {}
            for name, state in states.items():
                kind = name.split(":")[0] if ":" in name else kinds[0]
                through = state.trained_through()
                if through >= window.start:
                    raise AssertionError(f"{name} learned from {iso(through)} before scoring window {n}")
                index = state.vocabs.items.rows(ids)
                blended = state.scores(targets.users, history, sorted({weights[kind], 0.0}))
                results[name] = (to_catalog(blended[weights[kind]], index), through)
                results[f"{name}-noblend"] = (to_catalog(blended[0.0], index), through)
            clock = time.perf_counter()
            pop = popularity(history, catalog, popular_s)
            compute["popular"] += time.perf_counter() - clock
            results["popular"] = (pop[None, :].expand(len(targets.users), -1), int(ts[window.lo - 1]))
            index = prior_vocabs.items.rows(ids)
            prior_scores = prior_only.log_prob(len(prior_vocabs.items))[None, :]
            results["prior"] = (
                to_catalog(prior_scores, index).expand(len(targets.users), -1),
                prior_only.now_us,
            )
            # Chance: every candidate tied, so each metric is its expectation under a random ranking.
            results["chance"] = (torch.zeros(len(targets.users), len(catalog)), None)
            for name, (scores, through) in results.items():
                values = evaluate_window(scores, targets, ks)
                scored.setdefault(name, Scored()).add(values, targets.warm)
                summary = {m: metrics.mean(values[m]) for m in metric_names}
                summary["trained_through"] = iso(through)
                row["strategies"][name] = summary
        result.windows.append(row)
        if on_window:
            on_window(n + 1, len(windows))

        # ---- then learn from the window ----
        catalog.add(rows["item_id"])
        known_users.update(rows["user_id"].to_pylist())
        for name, state in states.items():
            kind = name.split(":")[0] if ":" in name else kinds[0]
            strategy = name.split(":")[-1]
            clock = time.perf_counter()
            if strategy == "incremental":
                fine_tune(state.model, state.vocabs, rows, None, own[kind], seed=seed + n + 1)
                update_prior(state.prior, rows, state.vocabs)
            elif strategy == "retrain" and (n + 1) % cfg.retrain_every == 0 and n + 1 < len(windows):
                seen = data.slice(0, window.hi)
                model, vocabs, _ = fit_full(kind, seen, own[kind], seed=seed, progress=False)
                states[name] = ModelState(model, vocabs, build_prior(seen, vocabs, half_lives[kind]))
                log(f"{name}: retrained on {seen.num_rows} interactions after window {n}")
            compute[name] += time.perf_counter() - clock
        clock = time.perf_counter()
        prior_vocabs.items.add(rows["item_id"])
        update_prior(prior_only, rows, prior_vocabs)
        compute["prior"] += time.perf_counter() - clock

    for name, values in scored.items():
        result.models[name] = values.summary(metric_names)
        base = name.removesuffix("-noblend")
        result.models[name]["seconds"] = round(compute.get(base, 0.0), 3)
    result.seconds.update({name: round(value, 3) for name, value in compute.items()})
    result.seconds["total"] = round(time.perf_counter() - started, 3)
    result.data["scored_user_windows"] = sum(w["users"] for w in result.windows)
    for key in ("new_item_share", "new_since_bootstrap_share"):
        result.data[key] = _weighted_share(result.windows, key)
    return result


def _share_outside(items: list[str], known: set[str]) -> float:
    return sum(item not in known for item in items) / len(items) if items else 0.0


def _weighted_share(windows: list[dict], key: str) -> float:
    users = sum(w["users"] for w in windows)
    return round(sum(w[key] * w["users"] for w in windows) / users, 4) if users else 0.0

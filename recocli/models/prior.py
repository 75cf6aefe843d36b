"""A recency-popularity prior: what is popular *now*, as a model component that learns per batch.

A sequence model's weights learn tastes slowly; what people watch this month moves fast and new
items have no learned weight yet. The prior keeps exponentially time-decayed counts of positive
interactions per item (half-life in event time), updated in O(batch) with every incremental
update, and a model's scores are blended with it as a product of experts:

    blended = log_softmax(model scores) + weight · (log P_recent(item) − age weight · log(1 + age))

The half-life, `weight` and age weight are chosen on the newest data (`best_setting` keeps the
best); weight 0 is the plain model. Users without any history get a popularity alone, with a
half-life and age weight chosen on such users. Saved as plain tensors (safetensors-friendly).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

LN2 = float(np.log(2.0))


class RecencyPrior:
    """Exponentially decayed positive counts per item row; `log_prob()` is log P_recent(item)."""

    def __init__(self, n_items: int = 0, half_life_s: float = 30 * 86400, pseudo_count: float = 1.0) -> None:
        if half_life_s <= 0:
            raise ValueError("half_life_s must be positive")
        self.half_life_s = float(half_life_s)
        self.pseudo_count = float(pseudo_count)
        self.counts = torch.zeros(n_items, dtype=torch.float64)
        self.now_us: int | None = None  # counts are as of this event time

    @property
    def n_items(self) -> int:
        return len(self.counts)

    def grow(self, n_items: int) -> None:
        """Rows for new items (count 0); existing rows unchanged."""
        if n_items > self.n_items:
            self.counts = torch.cat([self.counts, self.counts.new_zeros(n_items - self.n_items)])

    def advance(self, now_us: int) -> None:
        """Decay every count to event time `now_us` (never backwards)."""
        if self.now_us is None:
            self.now_us = int(now_us)
            return
        if now_us > self.now_us:
            self.counts *= 2.0 ** (-(now_us - self.now_us) / 1e6 / self.half_life_s)
            self.now_us = int(now_us)

    def update(self, items: np.ndarray, ts_us: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add positive interactions (item rows, event times in µs, weights), decayed to the newest
        of them or the current time, whichever is later."""
        items = np.asarray(items, dtype=np.int64)
        if len(items) == 0:
            return
        ts_us = np.asarray(ts_us, dtype=np.int64)
        self.grow(int(items.max()) + 1)
        self.advance(int(ts_us.max()))
        w = np.ones(len(items)) if weights is None else np.asarray(weights, dtype=np.float64)
        age_s = (self.now_us - ts_us) / 1e6
        add = w * np.exp(-LN2 * np.maximum(age_s, 0.0) / self.half_life_s)
        self.counts.index_add_(0, torch.from_numpy(items), torch.from_numpy(add))

    def log_prob(self, n_items: int | None = None) -> Tensor:
        """log P_recent over item rows 0..n_items-1 (float32): smoothed by `pseudo_count` spread over
        the catalog, so an item nobody took lately is unlikely but not impossible."""
        n = self.n_items if n_items is None else n_items
        counts = torch.zeros(n, dtype=torch.float64)
        m = min(n, self.n_items)
        counts[:m] = self.counts[:m]
        smoothed = counts + self.pseudo_count / max(n, 1)
        return (smoothed / smoothed.sum()).log().float()

    def state(self) -> dict[str, Tensor]:
        return {
            "counts": self.counts.clone(),
            "now_us": torch.tensor([-1 if self.now_us is None else self.now_us], dtype=torch.int64),
            "half_life_s": torch.tensor([self.half_life_s], dtype=torch.float64),
            "pseudo_count": torch.tensor([self.pseudo_count], dtype=torch.float64),
        }

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> RecencyPrior:
        prior = cls(0, float(state["half_life_s"][0]), float(state["pseudo_count"][0]))
        prior.counts = state["counts"].to(torch.float64).clone()
        now = int(state["now_us"][0])
        prior.now_us = None if now < 0 else now
        return prior

    def copy(self) -> RecencyPrior:
        return RecencyPrior.from_state(self.state())


def blend(
    scores: Tensor,
    log_prior: Tensor,
    weight: float,
    has_history: Tensor | None = None,
    normalized: bool = False,
    cold_prior: Tensor | None = None,
) -> Tensor:
    """log_softmax(scores) + weight · log_prior per row (`log_prior` [items], or [B, items]: each
    row's own); rows without history (`has_history` False) get `cold_prior` alone (default:
    log_prior). -inf scores (unknown items) stay -inf. `normalized`: the scores are log_softmax
    already (a grid of blends normalises once)."""
    log_prior = log_prior.to(scores.device)
    if normalized:  # a new tensor: the caller's is scored again at other weights
        out = scores + weight * log_prior if weight else scores.clone()
    else:
        out = torch.log_softmax(scores.float(), dim=1)
        if weight:
            out.add_(log_prior, alpha=weight)
    if has_history is not None and not bool(has_history.all()):
        _alone(out, ~has_history.to(out.device), log_prior if cold_prior is None else cold_prior)
    return out


def _alone(out: Tensor, rows: Tensor, prior: Tensor) -> None:
    """Set `rows` (a mask) of `out` to `prior` alone ([items], or [B, items]: each row's own)."""
    prior = prior.to(out.device)
    out[rows] = prior[rows] if prior.dim() == 2 else prior.expand(int(rows.sum()), -1)


def rank_scores(
    scores: Tensor,
    log_prior: Tensor,
    weight: float,
    has_history: Tensor,
    normalized: bool = False,
    cold_prior: Tensor | None = None,
) -> Tensor:
    """The ranker's scores: `blend` at `weight`; at weight inf, popularity alone for every row
    (log_prior for users with history, `cold_prior` for the others)."""
    if not math.isinf(weight):
        return blend(scores, log_prior, weight, has_history, normalized, cold_prior)
    out = blend(scores, log_prior, 0.0, torch.zeros_like(has_history), normalized)
    if cold_prior is not None and not bool(has_history.all()):
        _alone(out, ~has_history.to(out.device), cold_prior)
    return out


def best_setting(quality: dict[tuple[float, ...], float]) -> tuple[float, ...]:
    """The setting with the best quality; ties go to the smaller last value, then the one before
    it, and so on (for (half-life, weight, age weight): the smaller age weight, then weight, then
    the shorter half-life: the simpler blend)."""
    return max(sorted(quality, key=lambda p: p[::-1]), key=quality.__getitem__)


def popularity_part(log_p: Tensor, log_age: Tensor | None, age_weight: float) -> Tensor:
    """The popularity part of a list: log P_recent less the age weight × log(1 + age in days) (the
    newer of two items as popular lately first); `log_age` [items] or [B, items]."""
    return log_p - age_weight * log_age if age_weight and log_age is not None else log_p


def item_log_age(first_us: Tensor, now_us: int | None, n_items: int) -> Tensor:
    """log(1 + days from each item's first event (µs; -1: none) to `now_us`) over item rows
    0..n_items-1; 0 for an item not seen by then (no event yet, or its first after `now_us`)."""
    first = torch.full((n_items,), -1, dtype=torch.int64)
    m = min(n_items, len(first_us))
    first[:m] = first_us[:m]
    if now_us is None:
        return torch.zeros(n_items)
    days = torch.where(first >= 0, (now_us - first).double() / 86400e6, 0.0).clamp_min(0)
    return days.log1p().float()


def earliest(first_us: Tensor, items: np.ndarray, ts_us: np.ndarray) -> Tensor:
    """Each item row's first event time (µs; -1: none) in `first_us` and the events (item rows,
    event times in µs), over as many rows as either has."""
    if len(items) == 0:
        return first_us
    never = np.iinfo(np.int64).max
    first = np.full(max(int(items.max()) + 1, len(first_us)), never, dtype=np.int64)
    old = first_us.numpy()
    first[: len(old)] = np.where(old >= 0, old, never)
    np.minimum.at(first, items, np.asarray(ts_us, dtype=np.int64))
    return torch.from_numpy(np.where(first == never, -1, first))


def half_life_name(half_life_s: float) -> str:
    """'7d', or 'all' for no decay."""
    return "all" if math.isinf(half_life_s) else f"{half_life_s / 86400:g}d"


def pair_name(half_life_s: float, weight: float, age_weight: float = 0.0) -> str:
    """'7d/4', or '7d/4/age0.25' with an age weight."""
    name = f"{half_life_name(half_life_s)}/{weight:g}"
    return f"{name}/age{age_weight:g}" if age_weight else name


@dataclass
class RankerState:
    """What a ranker holds beside its model: a recency prior per half-life on the grid (all
    updated per batch, so the next choice can move), each item's first event time, the chosen
    half-life, weight and age weight, and the figures they were chosen on ({blend name: {"ndcg@10",
    "users"}}, newest batches weighing most); apart from these, for users the model does not know,
    the half-life and age weight of the popularity they get alone, chosen on such users (None:
    the blend's, as versions saved before this choice)."""

    priors: dict[float, RecencyPrior]
    weights: list[float]
    half_life_s: float
    weight: float
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    chosen_on: dict[str, Any] = field(default_factory=dict)
    age_weights: list[float] = field(default_factory=lambda: [0.0])
    age_weight: float = 0.0
    first_us: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))  # -1: none yet
    cold_half_life_s: float | None = None
    cold_age_weight: float | None = None
    cold_figures: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def new(
        cls, half_lives_s: Sequence[float], weights: Sequence[float], age_weights: Sequence[float] = (0.0,)
    ) -> RankerState:
        """Before any choice: the longest half-life, weight 0 (the model alone), age ignored."""
        return cls(
            {float(h): RecencyPrior(0, h) for h in half_lives_s},
            [float(w) for w in weights],
            float(max(half_lives_s)),
            0.0,
            age_weights=[float(a) for a in age_weights],
        )

    def log_prior(
        self, n_items: int, half_life_s: float | None = None, age_weight: float | None = None
    ) -> Tensor:
        """The popularity part of every list [n_items]: log P_recent at the half-life, less the age
        weight × log(1 + the item's age in days), so that of two items as popular lately the newer
        comes first (defaults: the chosen ones)."""
        half_life_s = self.half_life_s if half_life_s is None else half_life_s
        age_weight = self.age_weight if age_weight is None else age_weight
        log_age = self.log_age(n_items) if age_weight else None
        return popularity_part(self.priors[half_life_s].log_prob(n_items), log_age, age_weight)

    def cold_log_prior(self, n_items: int) -> Tensor:
        """The popularity that users the model does not know get alone [n_items]."""
        return self.log_prior(n_items, self.cold_half_life_s, self.cold_age_weight)

    def log_age(self, n_items: int) -> Tensor:
        """log(1 + days since each item's first event) at the counts' event time (0: not seen yet)."""
        now = max((p.now_us for p in self.priors.values() if p.now_us is not None), default=None)
        return item_log_age(self.first_us, now, n_items)

    def saw(self, items: np.ndarray, ts_us: np.ndarray) -> None:
        """Keep each item's first event time (item rows, event times in µs)."""
        self.first_us = earliest(self.first_us, items, ts_us)

    def tensors(self) -> dict[str, Tensor]:
        """Stored beside the model's tensors (one safetensors file), under 'ranker.'."""
        halves = sorted(self.priors)
        n = max(p.n_items for p in self.priors.values())
        for prior in self.priors.values():
            prior.grow(n)
        return {
            "ranker.half_lives_s": torch.tensor(halves, dtype=torch.float64),
            "ranker.counts": torch.stack([self.priors[h].counts for h in halves]),
            "ranker.now_us": torch.tensor([self.priors[h].state()["now_us"][0] for h in halves]),
            "ranker.first_us": self.first_us.clone(),
        }

    def metadata(self) -> dict[str, Any]:
        """The choices and their figures, for metadata.json; "cold" once unknown users have chosen."""
        meta = {
            "half_life": half_life_name(self.half_life_s),
            "weight": _json_weight(self.weight),
            "age_weight": self.age_weight,
            "half_lives": [half_life_name(h) for h in sorted(self.priors)],
            "weights": [_json_weight(w) for w in self.weights],
            "age_weights": self.age_weights,
            "chosen_on": self.chosen_on,
            "ndcg@10": self.figures,
        }
        if self.cold_half_life_s is not None:
            meta["cold"] = {
                "half_life": half_life_name(self.cold_half_life_s),
                "age_weight": self.cold_age_weight,
                "ndcg@10": self.cold_figures,
            }
        return meta

    @classmethod
    def from_stored(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> RankerState:
        halves = tensors["ranker.half_lives_s"].tolist()
        priors = {}
        for n, h in enumerate(halves):
            now = tensors["ranker.now_us"][n : n + 1]
            state = {
                "counts": tensors["ranker.counts"][n],
                "now_us": now,
                "half_life_s": torch.tensor([h]),
                "pseudo_count": torch.tensor([1.0]),
            }
            priors[float(h)] = RecencyPrior.from_state(state)
        chosen = next(h for h in halves if half_life_name(h) == meta["half_life"])
        age_weights = [float(a) for a in meta.get("age_weights", [0.0])]  # none before item age
        cold = meta.get("cold")  # none before users the model does not know had their own choice
        return cls(
            priors,
            [float(w) for w in meta["weights"]],
            chosen,
            float(meta["weight"]),
            dict(meta.get("ndcg@10", {})),
            dict(meta.get("chosen_on", {})),
            age_weights,
            next(a for a in age_weights if a == float(meta.get("age_weight", 0.0))),
            tensors.get("ranker.first_us", torch.zeros(0)).to(torch.int64).clone(),
            None if cold is None else next(h for h in halves if half_life_name(h) == cold["half_life"]),
            None if cold is None else float(cold["age_weight"]),
            {} if cold is None else dict(cold["ndcg@10"]),
        )

    def copy(self) -> RankerState:
        return RankerState(
            {h: p.copy() for h, p in self.priors.items()},
            list(self.weights),
            self.half_life_s,
            self.weight,
            copy.deepcopy(self.figures),
            dict(self.chosen_on),
            list(self.age_weights),
            self.age_weight,
            self.first_us.clone(),
            self.cold_half_life_s,
            self.cold_age_weight,
            copy.deepcopy(self.cold_figures),
        )


def _json_weight(weight: float) -> float | str:
    """JSON has no infinity: 'inf' (float() reads it back)."""
    return "inf" if math.isinf(weight) else weight

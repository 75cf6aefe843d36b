"""Offline experiment (issue 18): signals the ranker lacks, against 7-day decayed popularity, on the
windows of `reco evaluate --protocol served` (a MovieLens folder with u.data, e.g. ml-100k).

Per 30-day window after the bootstrap cut (the protocol's own split), users with a positive (rating
≥ 3.5) on an item they had not rated are scored by NDCG@10 of a list made at the window's start,
seen items removed; warm users had events before the window. Every signal is counted up to the
window's start, and every setting is chosen on earlier windows only, as a ranker chooses at each
training on the newest rows (three 30-day windows before the cut serve as the first choices):

- (a) co-visitation: decayed counts of "j is among the next `span` positives after i" (both ways)
  per user, row-normalised; P(j | the user's last L positives) mixed into P_recent(7 days) at λ;
- (b) item age: − b · log(1 + days since the item's first event), a release-date proxy;
- (c) a listwise softmax regression over [log P_recent at 3, 7, 14, 30 days and all time,
  −log(1 + age), log co-visit (30-day half-life, last 10) and (no decay, last 3)], fitted on the
  windows before (its L2 chosen by fitting on the older ones and scoring the newest).

Model scores are left out by default (a training per window would be needed): the question is
whether these signals add anything to the popularity the served lists already match. `--model`
adds one more row: (c) with a sasrec's log-softmax as a feature, the model (default settings)
trained once on the events before the first choice window and scoring every window's users from
their history so far (stale, so a floor for what a fine-tuned model would add).

    PYTHONPATH=. python bench/served_signals.py ../shared/datasets/movielens/ml-100k [--model]
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from lakehouse.catalog import Warehouse
from lakehouse.registry import ModelRegistry
from recocli.config import load_settings
from recocli.lab.evaluate.served import commit, served_events
from recocli.lab.evaluate.split import bootstrap_cut, prequential_windows
from recocli.models.prior import RecencyPrior
from recocli.models.store import load_version
from recocli.recommend.ranker import Ranker, ndcg_at
from recocli.training.incremental import WarehouseTrainer
from recocli.training.interactions import from_bronze

DAY_US = 86400 * 10**6
EARLIER = 3  # choice windows before the cut
HALF_LIVES_D = (3.0, 7.0, 14.0, 30.0, float("inf"))
AGE_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
MIXES = (0.0, 0.1, 0.3, 0.5)
L2S = (0.0, 0.003, 0.01, 0.03, 0.1)
WARM_TARGET = 1.1  # issue 18: users with history, against the best decayed popularity


@dataclass
class Window:
    """One window's users, what they took next, and every signal as of its start."""

    users: list[int]
    seen: Tensor  # [B, I] bool: rated before the window (and the padding row 0)
    relevant: Tensor  # [B, R] item rows, -1 padding
    n_relevant: np.ndarray
    warm: np.ndarray
    features: Tensor  # [B, I, F]: log P_recent per half-life, -log1p(age), two log co-visits


def load(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = np.loadtxt(folder / "u.data", dtype=np.int64)
    data = data[np.argsort(data[:, 3], kind="stable")]
    return data[:, 0], data[:, 1], data[:, 2] >= 3.5, data[:, 3] * 10**6


def covisit(
    users: np.ndarray, items: np.ndarray, ts: np.ndarray, now: int, half_life_d: float, span: int, n: int
) -> np.ndarray:
    """P(j | i): decayed counts of j among the next `span` positives after i of a user, both ways."""
    order = np.lexsort((ts, users))
    users, items, ts = users[order], items[order], ts[order]
    decay = 2.0 ** (-(now - ts) / (half_life_d * DAY_US))
    counts = np.zeros((n, n))
    for d in range(1, span + 1):
        same = users[d:] == users[:-d]
        np.add.at(counts, (items[:-d][same], items[d:][same]), decay[d:][same])
        np.add.at(counts, (items[d:][same], items[:-d][same]), decay[d:][same])
    return counts / np.maximum(counts.sum(1, keepdims=True), 1e-12)


def window(
    users: np.ndarray, items: np.ndarray, pos: np.ndarray, ts: np.ndarray, start: int, end: int, n: int
) -> Window:
    lo, hi = int(np.searchsorted(ts, start)), int(np.searchsorted(ts, end))
    seen: dict[int, set[int]] = {}
    last: dict[int, list[int]] = {}
    for u, i, p in zip(users[:lo].tolist(), items[:lo].tolist(), pos[:lo].tolist(), strict=True):
        seen.setdefault(u, set()).add(i)
        if p:
            last.setdefault(u, []).append(i)
    wanted: dict[int, set[int]] = {}
    for u, i, p in zip(users[lo:hi].tolist(), items[lo:hi].tolist(), pos[lo:hi].tolist(), strict=True):
        if p and i not in seen.get(u, ()):
            wanted.setdefault(u, set()).add(i)
    who = sorted(wanted)
    logs = []
    for h in HALF_LIVES_D:
        prior = RecencyPrior(n, h * 86400)
        prior.update(items[:lo][pos[:lo]], ts[:lo][pos[:lo]])
        prior.advance(start)
        logs.append(prior.log_prob(n).double().numpy())
    first = np.full(n, np.inf)
    np.minimum.at(first, items[:lo], ts[:lo].astype(np.float64))
    neg_age = -np.log1p(np.where(np.isfinite(first), (start - first) / DAY_US, 0.0))
    p_users, p_items, p_ts = users[:lo][pos[:lo]], items[:lo][pos[:lo]], ts[:lo][pos[:lo]]
    cov = [(covisit(p_users, p_items, p_ts, start, h, 20, n), 10) for h in (30.0,)]
    cov += [(covisit(p_users, p_items, p_ts, start, float("inf"), 5, n), 3)]
    features = np.zeros((len(who), n, len(logs) + 1 + len(cov)), dtype=np.float32)
    features[:, :, : len(logs)] = np.stack(logs, axis=1)
    features[:, :, len(logs)] = neg_age
    for row, u in enumerate(who):
        for c, (matrix, lastn) in enumerate(cov):
            hist = last.get(u, [])[-lastn:]
            p = matrix[hist].mean(0) if hist else np.zeros(n)
            features[row, :, len(logs) + 1 + c] = np.log(p + 1e-4)
    mask = np.zeros((len(who), n), dtype=bool)
    mask[:, 0] = True
    for row, u in enumerate(who):
        mask[row, list(seen.get(u, ()))] = True
    width = max((len(wanted[u]) for u in who), default=1)
    relevant = torch.full((len(who), width), -1, dtype=torch.long)
    for row, u in enumerate(who):
        relevant[row, : len(wanted[u])] = torch.tensor(sorted(wanted[u]))
    n_relevant = np.array([len(wanted[u]) for u in who])
    warm = np.array([u in seen for u in who])
    return Window(who, torch.from_numpy(mask), relevant, n_relevant, warm, torch.from_numpy(features))


def ndcg(w: Window, scores: Tensor) -> np.ndarray:
    top = scores.double().masked_fill(w.seen, float("-inf")).topk(10, dim=1).indices
    return ndcg_at(top, w.relevant, w.n_relevant)


POP7 = HALF_LIVES_D.index(7.0)
AGE = len(HALF_LIVES_D)


def pop7(w: Window) -> Tensor:
    return w.features[:, :, POP7]


def with_age(b: float) -> Callable[[Window], Tensor]:
    return lambda w: w.features[:, :, POP7] + b * w.features[:, :, AGE]


def with_covisit(lam: float, c: int) -> Callable[[Window], Tensor]:
    def score(w: Window) -> Tensor:
        p_cov = (w.features[:, :, AGE + 1 + c].double().exp() - 1e-4).clamp_min(0)
        has = p_cov.sum(1, keepdim=True) > 0
        mixed = (1 - lam) * w.features[:, :, POP7].double().exp() + lam * p_cov
        return torch.where(has, mixed.log(), w.features[:, :, POP7].double())

    return score


def fit(windows: list[Window], l2: float) -> Callable[[Window], Tensor]:
    """Softmax regression over the items each user had not seen; the positives of the window are the
    targets (listwise, as NDCG ranks); features standardised, L2 on the standardised weights."""
    x = torch.cat([w.features for w in windows]).double()
    mask = torch.cat([w.seen for w in windows])
    target = torch.zeros(mask.shape, dtype=torch.float64)
    offset = 0
    for w in windows:
        rows, cols = (w.relevant >= 0).nonzero(as_tuple=True)
        target[rows + offset, w.relevant[rows, cols]] = 1.0
        offset += len(w.relevant)
    flat = x.reshape(-1, x.shape[2])
    mu, sd = flat.mean(0), flat.std(0) + 1e-6
    z = (x - mu) / sd
    coef = torch.zeros(x.shape[2], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([coef], max_iter=100)

    def closure() -> Tensor:
        opt.zero_grad()
        log_p = torch.log_softmax((z @ coef).masked_fill(mask, -1e9), dim=1)
        loss = -(log_p * target).sum() / target.sum() + l2 * (coef**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    weights = coef.detach()
    return lambda w: ((w.features.double() - mu) / sd) @ weights


def chosen(
    windows: list[Window], first: int, options: dict[str, Callable[[Window], Tensor]]
) -> tuple[np.ndarray, list[str]]:
    """Per window from `first`, the option best (all users) on the window before; (per-user NDCG, picks)."""
    out, picks = [], []
    for n in range(first, len(windows)):
        name = max(options, key=lambda k: ndcg(windows[n - 1], options[k](windows[n - 1])).mean())
        picks.append(name)
        out.append(ndcg(windows[n], options[name](windows[n])))
    return np.concatenate(out), picks


def learned(windows: list[Window], first: int, lookback: int = 3) -> tuple[np.ndarray, list[float]]:
    """(c): L2 chosen by fitting on the windows before the newest and scoring the newest, then refit
    on the `lookback` windows before each scored one."""
    out, picks = [], []
    for n in range(first, len(windows)):
        older, newest = windows[max(0, n - 1 - lookback) : n - 1], windows[n - 1]
        l2 = max(L2S, key=lambda v: ndcg(newest, fit(older, v)(newest)).mean())
        picks.append(l2)
        out.append(ndcg(windows[n], fit(windows[max(0, n - lookback) : n], l2)(windows[n])))
    return np.concatenate(out), picks


def model_feature(folder: Path, windows: list[Window], starts: list[int], n: int) -> list[Tensor]:
    """Per window [B, I]: log_softmax of a sasrec trained on the events before `starts[0]` (0 for users
    without history; the model's lowest score for items it lacks)."""
    settings = load_settings()
    events, _ = served_events(settings, folder)
    events = events.take(pc.sort_indices(events, [("ts", "ascending"), ("event_id", "ascending")]))
    interactions = from_bronze(events, None, settings.train.weights, settings.train.rating_threshold)
    first = int(np.searchsorted(events["ts"].cast(pa.int64()).to_numpy(), starts[0]))
    with tempfile.TemporaryDirectory(prefix="served-signals-") as tmp:
        local = replace(settings, warehouse=str(Path(tmp) / "warehouse"))
        commit(Warehouse(local.warehouse), events.slice(0, first), 0)
        WarehouseTrainer(local, progress=False).run(full=True)
        version = load_version(ModelRegistry(Warehouse(local.warehouse)))
    ranker = Ranker.of(version)
    index = torch.from_numpy(version.vocabs.items.rows(pa.array([str(i) for i in range(n)], pa.string())))
    out = []
    for w, start in zip(windows, starts, strict=True):
        before = interactions.filter(pc.less(interactions["ts"].cast(pa.int64()), start))
        raw, has = ranker.model_scores([str(u) for u in w.users], before)
        log_p = torch.log_softmax(raw.float(), dim=1)
        feature = log_p[:, index.clamp_min(0)]
        feature[:, index < 0] = log_p.min()
        feature[~has] = 0.0
        out.append(feature)
    return out


def main(folder: Path, with_model: bool) -> None:
    users, items, pos, ts = load(folder)
    n = int(items.max()) + 1
    spans = [(w.start, w.end) for w in prequential_windows(ts, bootstrap_cut(ts, 0.7), "30d")]
    step = 30 * DAY_US
    spans = [(spans[0][0] - k * step, spans[0][0] - (k - 1) * step) for k in range(EARLIER, 0, -1)] + spans
    windows = [window(users, items, pos, ts, a, b, n) for a, b in spans]
    warm = np.concatenate([w.warm for w in windows[EARLIER:]])

    def scored(option: Callable[[Window], Tensor]) -> np.ndarray:
        return np.concatenate([ndcg(w, option(w)) for w in windows[EARLIER:]])

    ages = {f"age {b:g}": with_age(b) for b in AGE_WEIGHTS}
    covs = {f"co-visit {c} mix {lam:g}": with_covisit(lam, c) for lam in MIXES for c in (0, 1)}
    base = scored(pop7)
    rows = {"popularity, 7 days": (base, "")}
    for label, options in (("(b) item age, chosen", ages), ("(a) co-visit, chosen", covs)):
        v, picks = chosen(windows, EARLIER, options)
        rows[label] = (v, ", ".join(picks))
        best = max(options, key=lambda k: scored(options[k]).mean())
        rows[label.replace("chosen", "best in hindsight")] = (scored(options[best]), best)
    v, picks = learned(windows, EARLIER)
    rows["(c) learned combination"] = (v, "L2 " + ", ".join(f"{p:g}" for p in picks))
    if with_model:
        for w, feature in zip(windows, model_feature(folder, windows, [a for a, _ in spans], n), strict=True):
            w.features = torch.cat([w.features, feature[:, :, None]], dim=2)
        v, picks = learned(windows, EARLIER)
        rows["(c) + a stale sasrec's log-softmax"] = (v, "L2 " + ", ".join(f"{p:g}" for p in picks))
    print(f"{len(spans) - EARLIER} windows, {len(base)} scored users, {int(warm.sum())} warm\n")
    print("| lists | NDCG@10 | warm | warm − popularity 7 d (paired) | all − popularity 7 d | settings |")
    print("|---|---:|---:|---:|---:|---|")
    for label, (v, note) in rows.items():
        d_all, d_warm = v - base, (v - base)[warm]
        print(
            f"| {label} | {v.mean():.3f} ± {se(v):.3f} | {v[warm].mean():.3f} ± {se(v[warm]):.3f} "
            f"| {d_warm.mean():+.4f} ± {se(d_warm):.4f} | {d_all.mean():+.4f} ± {se(d_all):.4f} | {note} |"
        )
    fair = [k for k in rows if "hindsight" not in k]  # chosen on earlier windows only
    best_label = max(fair, key=lambda k: rows[k][0][warm].mean())
    ratio = float(rows[best_label][0][warm].mean() / base[warm].mean())
    summary = {"bench": "served_signals", "best_for_warm": best_label, "warm_ratio_vs_pop7": round(ratio, 3)}
    print(json.dumps({**summary, "target": WARM_TARGET, "meets_target": ratio >= WARM_TARGET}))


def se(v: np.ndarray) -> float:
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--model"]
    main(Path(args[0] if args else "../shared/datasets/movielens/ml-100k"), "--model" in sys.argv[1:])

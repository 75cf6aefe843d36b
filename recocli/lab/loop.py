"""The closed loop, end to end, on the simulator: simulate → ingest (+ fine-tune) → recommend →
simulated feedback on the served lists → ingest … — what `reco demo` runs and measures.

Each round the simulated users answer the previous round's lists (impressions, clicks, likes,
dismissals) and act on their own; ingest lands both in Delta and fine-tunes the model on the new
rows (`reco ingest --train`); a new run is served, with a stable share of users held out on the
popularity list. CTR is measured from the ingested feedback, per variant, exactly as `reco report`
does: model lists against the held-out users the model knows (like for like: users new to the model
get the popular list whatever their group, and take popular items far more, so they are counted apart,
as `new`); freshness is the wall time from a round's events landing to the new lists being committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.catalog import Warehouse
from lakehouse.landing import write_landing_file
from lakehouse.schemas import HOLDOUT, POPULAR
from recocli.config import Settings
from recocli.lab.simulator import run_round
from recocli.recommend.report import served_feedback
from recocli.recommend.run import Request, RunResult, publish, recommend
from recocli.training.incremental import TrainAfterBatch

Say = Callable[[str], None]


@dataclass
class RoundResult:
    round: int
    events: int
    feedback: int
    quarantined: int
    model_version: int | None
    run_id: str
    # CTR of the lists served in the previous round, as answered in this one: model lists, the popular
    # list for held-out users the model knows, and (apart) the popular list for users new to the model.
    ctr_model: float | None
    ctr_holdout: float | None
    impressions_model: int
    impressions_holdout: int
    train_seconds: float
    freshness_seconds: float
    ctr_new: float | None = None
    impressions_new: int = 0


@dataclass
class LoopResult:
    rounds: list[RoundResult] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"rounds": [asdict(r) for r in self.rounds], "verdict": self.verdict()}

    def verdict(self) -> dict:
        """The loop works when model lists beat the holdout (held-out users the model knows: like for
        like, by a stable hash of the user id) and their CTR does not fall from the
        first answered round to the later half of rounds. Both beyond chance: a gap counts when it
        exceeds two standard errors (binomial, from the impressions), so a working loop does not
        fail on the noise of a few thousand impressions, and a broken one still does."""
        answered = [r for r in self.rounds if r.ctr_model is not None and r.ctr_holdout is not None]
        if len(answered) < 2:
            return {"ok": False, "why": "fewer than two answered rounds"}
        later = answered[len(answered) // 2 :]
        model, holdout, new = (_pooled(answered, v) for v in ("model", "holdout", "new"))
        first, late = (answered[0].ctr_model, answered[0].impressions_model), _pooled(later, "model")
        beats = model[0] - holdout[0] > 2 * _standard_error(model, holdout)
        falls = first[0] - late[0] > 2 * _standard_error(first, late)
        return {
            "ok": beats and not falls,
            "ctr_model": round(model[0], 4),
            "ctr_holdout": round(holdout[0], 4),
            "ctr_new_users": round(new[0], 4) if new[1] else None,  # None: no new user was shown a list
            "impressions": {"model": model[1], "holdout": holdout[1], "new_users": new[1]},
            "ctr_first_round": round(first[0], 4),
            "ctr_later_rounds": round(late[0], 4),
        }


def _pooled(rounds: list[RoundResult], variant: str) -> tuple[float, int]:
    """(CTR, impressions) over `rounds`."""
    clicks = sum((getattr(r, f"ctr_{variant}") or 0) * getattr(r, f"impressions_{variant}") for r in rounds)
    shown = sum(getattr(r, f"impressions_{variant}") for r in rounds)
    return (clicks / shown if shown else 0.0), shown


def _standard_error(a: tuple[float, int], b: tuple[float, int]) -> float:
    """Standard error of the difference of two click-through rates (CTR, impressions)."""
    return sum(p * (1 - p) / n for p, n in (a, b) if n) ** 0.5


def run_loop(
    settings: Settings, rounds: int, events_per_round: int, k: int, holdout: float, say: Say
) -> LoopResult:
    """The loop on the simulator: each round it answers the newest run and acts on its own. The
    answers go in through a `reco serve` started for the loop (POST /feedback)."""
    from recocli.serve.local import local_service

    loop = _Loop(settings, k, holdout, say)
    with local_service(settings) as send:
        for number in range(rounds):
            landed = time.perf_counter()
            sim = run_round(
                settings.simulate,
                settings.ingest.landing,
                events_per_round,
                warehouse=loop.warehouse,
                send_feedback=lambda records: send("feedback", records),
            )
            loop.finish_round(number, landed, sim.answered_run)
    return loop.result


def run_replay_loop(
    settings: Settings, data: Path, rounds: int, k: int, holdout: float, say: Say
) -> LoopResult:
    """The loop on a MovieLens folder: the first half of its ratings (in time) bootstrap the model,
    the rest arrive in `rounds` windows. A served list is answered by what its user really did in
    the next window: an impression per shown item, a click where the user rated it at or above the
    positive threshold — an offline stand-in for real feedback, through the same tables."""
    from recocli.data.movielens import detect, json_lines, read_ratings

    events = read_ratings(detect(data))
    events = events.take(pc.sort_indices(events, [("ts", "ascending"), ("event_id", "ascending")]))
    boot = events.num_rows // 2
    bounds = [boot + (events.num_rows - boot) * n // rounds for n in range(rounds + 1)]
    chunks = [events.slice(0, boot)] + [events.slice(a, b - a) for a, b in pairwise(bounds)]
    loop = _Loop(settings, k, holdout, say)
    served = None
    for number, chunk in enumerate(chunks):
        landed = time.perf_counter()
        if served is not None:
            answers = replay_feedback(served, chunk, settings.train.rating_threshold)
            write_landing_file(settings.ingest.landing, "feedback", f"round-{number:03d}.jsonl", answers)
        write_landing_file(
            settings.ingest.landing, "events", f"round-{number:03d}.jsonl", json_lines(chunk).to_pylist()
        )
        served = loop.finish_round(number, landed, served.run_id if served is not None else None)
    return loop.result


def replay_feedback(served: RunResult, window: pa.Table, threshold: float) -> list[dict]:
    """Feedback on `served` from the users' real ratings in the next window, in the window's event
    time (an impression when the user first acts in it, a click when they rate the item): stamped
    with the wall clock, it would be decades newer than the replayed events and age every decayed
    popularity count to nothing."""
    first: dict[str, datetime] = {}
    liked: dict[tuple[str, str], datetime] = {}
    for user, item, value, ts in zip(
        window["user_id"].to_pylist(),
        window["item_id"].to_pylist(),
        window["value"].to_pylist(),
        window["ts"].to_pylist(),
        strict=True,
    ):
        first[user] = min(first.get(user, ts), ts)
        if value is not None and value >= threshold:
            liked[(user, item)] = min(liked.get((user, item), ts), ts)
    answers = []
    for row in served.rows.filter(
        pc.is_in(served.rows["user_id"], pa.array(list(first), pa.string()))
    ).to_pylist():
        base = {
            "rec_id": row["rec_id"],
            "user_id": row["user_id"],
            "item_id": row["item_id"],
            "position": row["rank"],
            "model_version": row["model_version"],
        }
        answers.append(
            {
                **base,
                "event_id": f"{row['rec_id']}/{row['item_id']}/impression",
                "action": "impression",
                "ts": first[row["user_id"]].isoformat(),
            }
        )
        if (clicked := liked.get((row["user_id"], row["item_id"]))) is not None:
            answers.append(
                {
                    **base,
                    "event_id": f"{row['rec_id']}/{row['item_id']}/click",
                    "action": "click",
                    "ts": clicked.isoformat(),
                }
            )
    return answers


class _Loop:
    """One round's second half, shared by both worlds: ingest (+ fine-tune), serve, measure."""

    def __init__(self, settings: Settings, k: int, holdout: float, say: Say) -> None:
        self.settings, self.k, self.holdout, self.say = settings, k, holdout, say
        self.warehouse = Warehouse(settings.warehouse)
        self.trainer = TrainAfterBatch(settings)
        self.result = LoopResult()

    def finish_round(self, number: int, landed: float, answered_run: str | None) -> RunResult:
        from spark_jobs.ingest import run_ingest  # starts a JVM

        train_seconds = 0.0

        def fine_tune(report) -> None:
            nonlocal train_seconds
            trained = self.trainer(report.tables_written)
            if trained is not None:
                train_seconds += trained.seconds

        ingested = run_ingest(self.settings, once=True, on_batch=fine_tune).totals()
        served = recommend(self.settings, Request(k=self.k, holdout=self.holdout))
        publish(self.settings, served)
        fresh = time.perf_counter() - landed
        ctr = _ctr_of_run(self.warehouse, answered_run)
        row = RoundResult(
            round=number,
            events=ingested["events_written"],
            feedback=ingested["feedback_written"],
            quarantined=ingested["quarantined"],
            model_version=served.model_version,
            run_id=served.run_id,
            ctr_model=ctr["model"][0],
            ctr_holdout=ctr["holdout"][0],
            impressions_model=ctr["model"][1],
            impressions_holdout=ctr["holdout"][1],
            train_seconds=round(train_seconds, 2),
            freshness_seconds=round(fresh, 2),
            ctr_new=ctr["new"][0],
            impressions_new=ctr["new"][1],
        )
        self.result.rounds.append(row)
        self.say(_describe(row))
        return served


def _ctr_of_run(warehouse: Warehouse, run_id: str | None) -> dict[str, tuple[float | None, int]]:
    """CTR and impressions of one served run: model lists, the held-out users the model knows, and
    users new to the model (the popular fallback)."""
    groups = {"model": None, "holdout": HOLDOUT, "new": POPULAR}
    if run_id is None:
        return dict.fromkeys(groups, (None, 0))
    rows = served_feedback(warehouse)
    rows = rows.filter(pc.starts_with(rows["rec_id"], f"{run_id}/"))
    popular = pc.is_in(rows["variant"], value_set=pa.array([HOLDOUT, POPULAR]))
    out = {}
    for name, variant in groups.items():
        part = rows.filter(pc.invert(popular) if variant is None else pc.equal(rows["variant"], variant))
        shown = pc.sum(pc.equal(part["action"], "impression")).as_py() or 0
        clicks = pc.sum(pc.equal(part["action"], "click")).as_py() or 0
        out[name] = (clicks / shown if shown else None, shown)
    return out


def _describe(row: RoundResult) -> str:
    def pct(value: float | None) -> str:
        return "  -  " if value is None else f"{100 * value:5.2f}%"

    return (
        f"round {row.round:2d}: {row.events:5d} events, {row.feedback:5d} feedback → "
        f"model v{row.model_version} (fine-tune {row.train_seconds:.1f}s) | CTR model {pct(row.ctr_model)} "
        f"vs holdout {pct(row.ctr_holdout)} (new users {pct(row.ctr_new)}) | "
        f"events→new lists {row.freshness_seconds:.1f}s"
    )


def write_report(result: LoopResult, folder: Path) -> Path:
    """report.md with the per-round table and two PNG charts (CTR per round, freshness)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    answered = [r for r in result.rounds if r.ctr_model is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(
        [r.round for r in answered], [100 * r.ctr_model for r in answered], marker="o", label="model lists"
    )
    ax.plot(
        [r.round for r in answered],
        [100 * (r.ctr_holdout or 0) for r in answered],
        marker="s",
        label="popularity holdout",
    )
    ax.set_xlabel("round")
    ax.set_ylabel("CTR of the lists served the round before (%)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(folder / "ctr.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar([r.round for r in result.rounds], [r.freshness_seconds for r in result.rounds])
    ax.set_xlabel("round")
    ax.set_ylabel("events landed → new lists committed (s)")
    fig.savefig(folder / "freshness.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    verdict = result.verdict()
    lines = [
        "# reco demo report",
        "",
        f"Verdict: **{'loop OK' if verdict['ok'] else 'loop BROKEN'}** — "
        + ", ".join(f"{k} {v}" for k, v in verdict.items() if k != "ok"),
        "",
        "CTR holdout: the popular list served to held-out users the model knows; CTR new users: the "
        "popular list served to users new to the model (not in the comparison).",
        "",
        "| round | events | feedback | model | fine-tune s | CTR model | CTR holdout | CTR new users "
        "| events→lists s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result.rounds:

        def pct(value: float | None) -> str:
            return "-" if value is None else f"{100 * value:.2f}%"

        lines.append(
            f"| {r.round} | {r.events} | {r.feedback} | v{r.model_version} | {r.train_seconds} | "
            f"{pct(r.ctr_model)} | {pct(r.ctr_holdout)} | {pct(r.ctr_new)} | {r.freshness_seconds} |"
        )
    lines += ["", "![CTR per round](ctr.png)", "", "![freshness](freshness.png)", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path

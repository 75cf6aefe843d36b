"""Dynamic batching of GET requests: the requests that arrive while one batch is being scored are
scored together in the next, in one matrix product (as `reco recommend` scores many users). An idle
service scores a lone request at once; a busy one pays the per-batch costs (id lookups, the model's
forward pass) once per batch instead of once per request.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pyarrow as pa

from recocli.serve.ranking import Ranked
from recocli.serve.state import LiveState


class RankBatcher:
    def __init__(self, state: LiveState, max_batch: int) -> None:
        self.state, self.max_batch = state, max_batch
        self._queue: list[tuple[str, int, asyncio.Future]] = []
        self._draining = False
        self._task: asyncio.Task | None = None

    async def rank(self, user_id: str, k: int) -> Ranked:
        done = asyncio.get_running_loop().create_future()
        self._queue.append((user_id, k, done))
        if not self._draining:
            self._draining = True
            self._task = asyncio.create_task(self._drain())  # kept: the loop holds tasks weakly
        return await done

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                users = list(dict.fromkeys(user for user, _, _ in batch))
                try:
                    ranked = await asyncio.to_thread(self._score, users, max(k for _, k, _ in batch))
                except Exception as exc:  # every request of the batch gets the error (a 500)
                    for _, _, done in batch:
                        done.set_exception(exc)
                    continue
                for user, k, done in batch:
                    done.set_result(dataclasses.replace(ranked[user], items=ranked[user].items[:k]))
        finally:
            self._draining = False

    def _score(self, users: list[str], k: int) -> dict[str, Ranked]:
        ranking = self.state.ranking  # one snapshot for the whole batch
        interactions = pa.concat_tables([self.state.interactions_of(user) for user in users])
        return dict(zip(users, ranking.rank(users, interactions, k), strict=True))

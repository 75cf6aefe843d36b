"""`reco serve`'s app in process (FastAPI's test client, real Delta tables, a real trained model):
lists, read-your-writes, the door's checks, auth and limits, hot model swaps, metrics, served lists."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from helpers import event, feedback
from planted import commit_events, events, to_bronze

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.landing import landed_files, served_dir
from lakehouse.registry import ModelRegistry
from recocli.config import load_settings
from recocli.recommend.report import feedback_report
from recocli.recommend.run import Request, recommend
from recocli.serve.app import Service, create_app
from recocli.training.incremental import WarehouseTrainer
from spark_jobs.ingest import run_ingest

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TINY = {
    "model.sasrec.dim": 16,
    "model.sasrec.max_len": 10,
    "model.sasrec.blocks": 1,
    "train.sasrec.epochs": 2,
    "train.min_epoch_steps": 3,
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """Bronze with 900 generated events and a trained sasrec (version 1)."""
    root = tmp_path_factory.mktemp("serve")
    commit_events(root / "warehouse", events(900, seed=11), batch_id=0)
    trained = WarehouseTrainer(settings_for(root), progress=False).run(full=True)
    assert trained.version == 1
    return root


def settings_for(root: Path, **overrides):
    return load_settings(
        env={},
        overrides={
            "warehouse": str(root / "warehouse"),
            "ingest.landing": str(root / "landing"),
            "serve.refresh": "100ms",
            "serve.served_interval": "50ms",
            "serve.max_body": "64KB",
            "serve.max_records": 50,
            **TINY,
            **overrides,
        },
    )


@pytest.fixture
def client(warehouse, tmp_path):
    settings = settings_for(warehouse, **{"ingest.landing": str(tmp_path / "landing")})
    with TestClient(create_app(Service(settings, TOKEN))) as http:
        http.settings = settings
        yield http


def a_user(root: Path) -> str:
    bronze = delta.read_table(Warehouse(root / "warehouse").uri(catalog.EVENTS), columns=["user_id"])
    return sorted(set(bronze["user_id"].to_pylist()))[0]


def test_list_is_what_reco_recommend_ranks(client, warehouse):
    user = a_user(warehouse)
    got = client.get(f"/recommendations/{user}", params={"k": 10}).json()
    expected = recommend(client.settings, Request(k=10, users=[user])).rows.to_pylist()
    assert got["user_id"] == user and got["strategy"] == "model" and got["model_version"] == 1
    assert [i["item_id"] for i in got["items"]] == [r["item_id"] for r in expected]
    assert [i["position"] for i in got["items"]] == list(range(1, 11))
    assert [i["score"] for i in got["items"]] == pytest.approx([r["score"] for r in expected], rel=1e-5)


def test_unknown_user_gets_the_popular_list(client):
    got = client.get("/recommendations/nobody-yet", params={"k": 5}).json()
    expected = recommend(client.settings, Request(k=5, users=["nobody-yet"])).rows.to_pylist()
    assert got["strategy"] == "popular" and got["model_version"] is None
    assert [i["item_id"] for i in got["items"]] == [r["item_id"] for r in expected]


def test_a_posted_click_moves_the_next_list_at_once(client, warehouse):
    user = a_user(warehouse)
    before = [i["item_id"] for i in client.get(f"/recommendations/{user}").json()["items"]]
    now = time.time()
    clicks = [event(f"ryw{n}", user_id=user, item_id=item, ts=now + n) for n, item in enumerate(before[:3])]
    assert client.post("/events", json=clicks, headers=AUTH).status_code == 202
    after = [i["item_id"] for i in client.get(f"/recommendations/{user}").json()["items"]]
    assert after != before and not set(before[:3]) & set(after)  # seen now: left out, and the rest moved
    click = feedback("ryw", user_id="brand-new", item_id=before[0], ts=now)
    unknown = client.post("/feedback", json=click, headers=AUTH)
    assert unknown.status_code == 202
    assert before[0] not in [i["item_id"] for i in client.get("/recommendations/brand-new").json()["items"]]


def test_one_bad_record_rejects_the_request_and_lands_nothing(client):
    landing = Path(client.settings.ingest.landing)
    bad = [event(1), event(2, event_type="teleport"), event(3), {"event_id": "x"}, "text"]
    response = client.post("/events", json=bad, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"index": 1, "reason": "unknown_event_type"},
        {"index": 3, "reason": "missing_field:user_id"},
        {"index": 4, "reason": "malformed_json"},
    ]
    assert client.post("/events", content=b"{not json", headers=AUTH).status_code == 400
    assert client.post("/events", json=[], headers=AUTH).status_code == 400
    # Python's JSON extensions are not JSON: ingest quarantines such a line, so the door refuses it.
    nan = json.dumps(event(5, value=1.0)).replace('"value": 1.0', '"value": NaN').encode()
    assert b"NaN" in nan and client.post("/events", content=nan, headers=AUTH).status_code == 400
    assert landed_files(landing) == []


def test_accepted_records_are_landed_before_202(client):
    landing = Path(client.settings.ingest.landing)
    records = [feedback(n, item_id=f"i{n}") for n in range(20)]
    assert client.post("/feedback", json=records, headers=AUTH).json() == {"accepted": 20}
    assert client.post("/feedback", json=feedback(99), headers=AUTH).status_code == 202
    files = landed_files(landing)
    lines = [json.loads(text) for path in files for text in path.read_text().splitlines()]
    assert all(p.parent.name == "feedback" for p in files)
    assert sorted(r["event_id"] for r in lines) == sorted([f"f{n}" for n in range(20)] + ["f99"])


def test_writes_need_the_token_and_bodies_have_limits(client):
    assert client.post("/events", json=event(1)).status_code == 401
    assert client.post("/events", json=event(1), headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/events", json=[event(n) for n in range(51)], headers=AUTH).status_code == 413
    big = [event(n, context={"pad": "x" * 2000}) for n in range(40)]
    assert client.post("/events", json=big, headers=AUTH).status_code == 413
    assert client.get("/recommendations/u1", params={"k": 101}).status_code == 422
    assert landed_files(Path(client.settings.ingest.landing)) == []


def test_health_metrics_and_openapi(client, warehouse):
    client.get(f"/recommendations/{a_user(warehouse)}")
    assert client.get("/healthz").json()["model_version"] == 1
    text = client.get("/metrics").text
    assert 'reco_serve_requests_total{method="GET",route="/recommendations/{user_id}",status="200"} 1' in text
    assert (
        'reco_serve_request_seconds_bucket{method="GET",route="/recommendations/{user_id}",le="+Inf"} 1'
        in text
    )
    assert "reco_serve_model_version 1" in text and "reco_serve_landing_lag_seconds 0.0" in text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommendations/{user_id}", "/events", "/feedback", "/healthz", "/metrics"} <= set(paths)


def test_served_lists_are_recorded_and_reco_report_joins_feedback_to_them(client, warehouse):
    landing = Path(client.settings.ingest.landing)
    served = client.get(f"/recommendations/{a_user(warehouse)}", params={"k": 3}).json()
    popular = client.get("/recommendations/somebody-new", params={"k": 3}).json()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum(1 for _ in served_dir(landing).glob("serve-*")) < 1:
        time.sleep(0.05)
    answers = [
        feedback(
            f"{n}-{body['rec_id']}",
            rec_id=body["rec_id"],
            item_id=body["items"][0]["item_id"],
            action=action,
            model_version=None,
        )
        for n, body in enumerate((served, popular))
        for action in ("impression", "click")
    ]
    spec = catalog.FEEDBACK
    table = to_bronze(pa.Table.from_pylist([_typed(a) for a in answers]), spec, 0)
    other = Warehouse(landing.parent / "report-warehouse")
    delta.append_once(other.uri(spec), spec, table, "test", 0)
    time.sleep(0.2)
    rows = feedback_report(other, landing)
    assert {(r["variant"], r["impressions"], r["clicks"]) for r in rows} == {("v1", 1, 1), ("popular", 1, 1)}


def _typed(record: dict) -> dict:
    return {**record, "ts": datetime.fromisoformat(record["ts"].replace("Z", "+00:00")), "value": None}


def test_a_new_version_and_a_rollback_are_served_without_restart(warehouse, tmp_path):
    settings = settings_for(warehouse, **{"ingest.landing": str(tmp_path / "landing")})
    registry = ModelRegistry(Warehouse(warehouse / "warehouse"))
    with TestClient(create_app(Service(settings, TOKEN))) as http:
        assert http.get("/healthz").json()["model_version"] == 1
        commit_events(warehouse / "warehouse", events(300, seed=12), batch_id=1)
        assert WarehouseTrainer(settings, progress=False).run().version == 2
        assert _wait_for_version(http, 2)
        registry.rollback(1)
        assert _wait_for_version(http, 1)


def _wait_for_version(http, version: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            http.get("/recommendations/x").json()["model_version"] in (version, None)
            and http.get("/healthz").json()["model_version"] == version
        ):
            return True
        time.sleep(0.1)
    return False


def test_a_numeric_id_lands_ingests_and_is_served_as_written(spark, client, warehouse):
    """A user_id written 1.50 is user "1.50" at the door, in the landing file, in bronze and in GET,
    as `reco ingest` reads it (not 1.5); value stays a number."""
    item = client.get("/recommendations/1.50").json()["items"][0]["item_id"]
    body = (
        f'{{"event_id":"num-id","user_id":1.50,"item_id":"{item}","event_type":"click",'
        f'"value":4.50,"ts":{int(time.time())}}}'
    )
    headers = {**AUTH, "Content-Type": "application/json"}
    assert client.post("/events", content=body, headers=headers).status_code == 202
    [landed] = landed_files(client.settings.ingest.landing)
    assert '"user_id":1.50,' in landed.read_text() and '"value":4.50,' in landed.read_text()
    assert item not in [i["item_id"] for i in client.get("/recommendations/1.50").json()["items"]]
    assert client.get("/healthz").json()["pending_events"] == 1
    run_ingest(client.settings, once=True)
    rows = delta.read_table(Warehouse(warehouse / "warehouse").uri(catalog.EVENTS)).to_pylist()
    [row] = [r for r in rows if r["event_id"] == "num-id"]
    assert (row["user_id"], row["value"]) == ("1.50", 4.5)
    deadline = time.monotonic() + 30  # the refresh sees the commit: the event is served from bronze now
    while client.get("/healthz").json()["pending_events"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.get("/healthz").json()["pending_events"] == 0
    assert item not in [i["item_id"] for i in client.get("/recommendations/1.50").json()["items"]]
    assert client.post("/events", content=body.replace("4.50", "NaN"), headers=headers).status_code == 400

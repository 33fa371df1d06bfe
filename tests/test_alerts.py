"""Every built-in rule fires and resolves; channels log, file and aggregate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mofsim_core.alerts import (
    DEFAULT_RULES,
    AlertStore,
    Snapshot,
    evaluate,
    load_rules,
    read_active,
    read_history,
)
from mofsim_core.devices_simulated import SimulatedBackend
from mofsimd.alert_channels import AlertChannels

ROOT = Path(__file__).resolve().parents[1]


def card_snapshot(backend: SimulatedBackend) -> Snapshot:
    # As the daemon gives them: each device with its slot's kind and index.
    slots = {s.slot_id: s for s in backend.slots()}
    return Snapshot(
        devices=[
            d.to_dict() | {"kind": slots[d.slot_id].kind, "index": slots[d.slot_id].index}
            for d in backend.status()
        ]
    )


CASES = {
    "gpu_unavailable": (lambda b: b.lose(1), lambda b: b.restore(1)),
    "gpu_memory_low": (lambda b: b.set_memory_used(0, 23_500), lambda b: b.set_memory_used(0, 0)),
    "gpu_temperature_high": (
        lambda b: b.set_temperature(0, 91),
        lambda b: b.set_temperature(0, 60),
    ),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_device_rules_fire_and_resolve_on_simulated_faults(tmp_path: Path, rule: str) -> None:
    backend = SimulatedBackend(2)
    store = AlertStore(tmp_path)
    rules = load_rules(ROOT / "etc" / "alerts.toml")
    assert evaluate(rules, card_snapshot(backend), store) == ([], [])
    inject, heal = CASES[rule]
    inject(backend)
    fired, resolved = evaluate(rules, card_snapshot(backend), store)
    assert [a.type for a in fired] == [rule] and resolved == []
    assert fired[0].level == DEFAULT_RULES[rule].level
    # Spec 7.3: the device's integer index, the slot beside it.
    slot_id = backend.slots()[fired[0].details["gpu_id"]].slot_id
    assert fired[0].details["slot"] == slot_id == fired[0].subject
    assert isinstance(fired[0].details["gpu_id"], int)
    assert evaluate(rules, card_snapshot(backend), store) == ([], [])  # no refiring
    assert [a["type"] for a in read_active(tmp_path)] == [rule]
    heal(backend)
    fired, resolved = evaluate(rules, card_snapshot(backend), store)
    assert fired == [] and [a.type for a in resolved] == [rule]
    assert resolved[0].resolved and resolved[0].resolved_at
    assert read_active(tmp_path) == []
    history = read_history(tmp_path)
    assert [h["resolved"] for h in history] == [True, False]


SNAPSHOT_CASES = {
    "queue_backlog": (Snapshot(queued=150), Snapshot(queued=3)),
    "model_consecutive_failures": (
        Snapshot(failure_streaks={"mace-mp": 6}),
        Snapshot(failure_streaks={"mace-mp": 0}),
    ),
    "disk_space_low": (Snapshot(disk_free_gb=12.0), Snapshot(disk_free_gb=400.0)),
    "api_latency_high": (Snapshot(api_p99_s=7.5), Snapshot(api_p99_s=0.01)),
    "worker_heartbeat_lost": (
        Snapshot(heartbeat_age_s={"gpu3": 300.0}),
        Snapshot(heartbeat_age_s={"gpu3": 1.0}),
    ),
    "database_unavailable": (Snapshot(database_down="connection refused"), Snapshot()),
}


@pytest.mark.parametrize("rule", sorted(SNAPSHOT_CASES))
def test_other_rules_fire_and_resolve(tmp_path: Path, rule: str) -> None:
    store = AlertStore(tmp_path)
    bad, good = SNAPSHOT_CASES[rule]
    fired, _ = evaluate(DEFAULT_RULES, bad, store)
    assert [a.type for a in fired] == [rule]
    _, resolved = evaluate(DEFAULT_RULES, good, store)
    assert [a.type for a in resolved] == [rule]


def test_gpu_id_is_the_integer_index_and_null_for_a_cpu_slot(tmp_path: Path) -> None:
    snap = Snapshot(
        devices=[
            {"slot_id": "gpu3", "kind": "nvml", "index": 3, "available": False, "error": "lost"},
            {"slot_id": "cpu0", "kind": "cpu", "index": 0, "available": False, "error": "x"},
        ],
        heartbeat_age_s={"gpu3": 100.0, "cpu0": 100.0},
    )
    fired, _ = evaluate(DEFAULT_RULES, snap, AlertStore(tmp_path))
    where = {(a.type, a.subject): (a.details["gpu_id"], a.details["slot"]) for a in fired}
    assert where == {
        ("gpu_unavailable", "gpu3"): (3, "gpu3"),
        ("gpu_unavailable", "cpu0"): (None, "cpu0"),
        ("worker_heartbeat_lost", "gpu3"): (3, "gpu3"),
        ("worker_heartbeat_lost", "cpu0"): (None, "cpu0"),
    }


def test_heartbeat_rule_follows_the_daemon_timeout_unless_it_sets_its_own(
    tmp_path: Path,
) -> None:
    snap = Snapshot(heartbeat_age_s={"cpu0": 10.0}, heartbeat_timeout_s=5.0)
    fired, _ = evaluate(DEFAULT_RULES, snap, AlertStore(tmp_path / "a"))
    assert [a.details["threshold_s"] for a in fired] == [5.0]
    conf = tmp_path / "alerts.toml"
    conf.write_text("[rules.worker_heartbeat_lost]\nthreshold = 30\n")
    assert evaluate(load_rules(conf), snap, AlertStore(tmp_path / "b")) == ([], [])


def test_thresholds_and_switches_come_from_the_config(tmp_path: Path) -> None:
    conf = tmp_path / "alerts.toml"
    conf.write_text(
        "[rules.queue_backlog]\nthreshold = 5\n[rules.disk_space_low]\nenabled = false\n"
    )
    rules = load_rules(conf)
    fired, _ = evaluate(rules, Snapshot(queued=6, disk_free_gb=1.0), AlertStore(tmp_path))
    assert [a.type for a in fired] == ["queue_backlog"]


def test_active_alerts_survive_a_restart(tmp_path: Path) -> None:
    evaluate(DEFAULT_RULES, Snapshot(queued=500), AlertStore(tmp_path))
    again = AlertStore(tmp_path)
    assert evaluate(DEFAULT_RULES, Snapshot(queued=500), again) == ([], [])


def test_channels_write_the_file_and_aggregate_warnings(tmp_path: Path) -> None:
    sent: list[tuple[str, dict]] = []

    class Recorder:
        def send(self, key: str, event: str, payload: dict, sub: object) -> None:
            sent.append((event, payload))

    from mofsim_core.webhooks import Subscription

    ch = AlertChannels(
        file=tmp_path / "alerts.jsonl",
        webhook=Subscription("http://127.0.0.1:9/x"),
        dispatcher=Recorder(),
        warning_window_s=3600,
    )  # type: ignore[arg-type]
    store = AlertStore(tmp_path / "a")
    fired, _ = evaluate(
        DEFAULT_RULES,
        Snapshot(queued=500, disk_free_gb=1.0, heartbeat_age_s={"gpu0": 999.0}),
        store,
    )
    ch.publish(fired, [])
    assert len(sent) == 1 and sent[0][1]["type"] == "worker_heartbeat_lost"  # at once
    ch.flush_due(force=True)
    assert sent[1][1]["aggregated"] is True and sent[1][1]["count"] == 2
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert {line["type"] for line in lines} == {
        "queue_backlog",
        "disk_space_low",
        "worker_heartbeat_lost",
    }
    assert set(lines[0]) >= {
        "alert_id",
        "level",
        "type",
        "message",
        "details",
        "timestamp",
        "resolved",
    }


def test_api_p99_comes_from_recent_requests(tmp_path: Path) -> None:
    import time

    from mofsim_http import app as http_app

    http_app.RECENT_LATENCIES.clear()
    assert http_app.api_p99() is None
    now = time.monotonic()
    http_app.RECENT_LATENCIES.append((now - 1000, 60.0))  # outside the window
    for i in range(100):
        http_app.RECENT_LATENCIES.append((now, (i + 1) / 100))
    assert http_app.api_p99() == 1.0
    fired, _ = evaluate(DEFAULT_RULES, Snapshot(api_p99_s=http_app.api_p99()), AlertStore(tmp_path))
    assert fired == []
    http_app.RECENT_LATENCIES.clear()

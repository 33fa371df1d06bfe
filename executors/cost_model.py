"""What a task will cost: peak memory and time per force call, learned from measurements.

One model per (model key, device, dtype).  Its points are measured tasks (their
``metrics.measurement``) and calibration runs (``mofsim models calibrate``): atoms,
neighbour pairs within the model's cutoff, peak memory (MiB) and seconds per force call.

The fit is ordinary and explainable: ``y = a + b*atoms + c*pairs`` by least squares on
relative errors (big and small systems count alike), reweighted twice so that a point
far off the line (a machine busy with something else) weighs less (Huber weights), with
every coefficient kept non-negative (a negative one is dropped and the rest refitted;
the best of those wins).  The memory estimate adds a safety margin: the 90th
percentile of the fit's relative residuals, at least ``MIN_MARGIN``.  A task that ran
out of memory on a card leaves a floor: anything at least as large needs more than that
card had.

Force calls per task come from its parameters (``call_bound``: steps, points, stages)
times the median ratio of actual to bound of past tasks of the same type and protocol.

Everything lives in ``<spool>/state/estimates.json``, small, rewritten atomically.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ESTIMATES_NAME = "estimates.json"
MAX_POINTS = 200  # per model and device: the newest are kept
MAX_RATIOS = 50  # force-call ratios per task type and protocol
MIN_MARGIN = 0.15  # held-out structures stray up to ~13 % from a SevenNet-0 fit (bench)
MIN_POINTS = 3  # fewer points make no fit

_lock = threading.Lock()


def device_key(name: str) -> str:
    """Cards of one kind share a model: ``Simulated GPU 3`` is a ``Simulated GPU``."""
    return re.sub(r"\s+\d+$", "", str(name).strip()) or "unknown"


def fit_key(model: str, device: str, dtype: str) -> str:
    return f"{model}|{device_key(device)}|{dtype}"


@dataclass(frozen=True)
class Line:
    """``a + b*atoms + c*pairs``; ``margin`` the relative safety margin."""

    a: float
    b: float
    c: float
    margin: float
    median_error: float
    n: int

    def __call__(self, atoms: float, pairs: float) -> float:
        return max(0.0, self.a + self.b * atoms + self.c * pairs)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "intercept": self.a,
            "per_atom": self.b,
            "per_pair": self.c,
            "margin": self.margin,
            "median_relative_error": self.median_error,
            "points": self.n,
        }


def _solve(xs: list[list[float]], ys: list[float], weights: list[float]) -> list[float] | None:
    import numpy as np

    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    w = np.sqrt(np.asarray(weights, dtype=float))
    # Columns scaled to one, so atoms (10^3) and pairs (10^5) condition alike.
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    coef, *_ = np.linalg.lstsq((x / scale) * w[:, None], y * w, rcond=None)
    out = [float(v) for v in coef / scale]
    return out if all(math.isfinite(v) for v in out) else None


def fit_line(points: Iterable[tuple[Any, Any, Any]]) -> Line | None:
    """The robust non-negative fit of ``(atoms, pairs, y)`` points; None below
    ``MIN_POINTS`` usable points."""
    pts = [(float(a), float(p), float(y)) for a, p, y in points if y is not None and y > 0]
    if len(pts) < MIN_POINTS:
        return None
    ys = [y for _, _, y in pts]
    best: tuple[float, list[float]] | None = None
    # Intercept always; then the slopes, dropping one that comes out negative.
    # Column 0 is the intercept; a fit with a negative one is tried again through zero.
    for cols in ((0, 1, 2), (0, 1), (0, 2), (1, 2), (1,), (2,)):
        rows = [[(1.0, a, p)[c] for c in cols] for a, p, _ in pts]
        weights = [1.0 / (y * y) for y in ys]  # relative errors
        coef: list[float] | None = None
        for _ in range(3):
            coef = _solve(rows, ys, weights)
            if coef is None:
                break
            res = [
                abs(sum(c * r for c, r in zip(coef, row, strict=True)) - y) / y
                for row, y in zip(rows, ys, strict=True)
            ]
            cut = max(1.5 * _median(res), 0.02)
            weights = [
                (1.0 if r <= cut else cut / r) / (y * y) for r, y in zip(res, ys, strict=True)
            ]
        if coef is None or any(v < 0 for v in coef):
            continue
        full = [0.0, 0.0, 0.0]
        for c, v in zip(cols, coef, strict=True):
            full[c] = v
        err = _median([abs(_eval(full, a, p) - y) / y for a, p, y in pts])
        if best is None or err < best[0] - 1e-9:
            best = (err, full)
        if cols == (0, 1, 2):
            break  # every coefficient non-negative: the full model it is
    if best is None:
        return None
    full = best[1]
    res = sorted(abs(_eval(full, a, p) - y) / y for a, p, y in pts)
    p90 = res[min(len(res) - 1, int(math.ceil(0.9 * len(res))) - 1)]
    return Line(full[0], full[1], full[2], max(MIN_MARGIN, p90), best[0], len(pts))


def _eval(coef: list[float], atoms: float, pairs: float) -> float:
    return max(0.0, coef[0] + coef[1] * atoms + coef[2] * pairs)


def _median(values: list[float]) -> float:
    s = sorted(values)
    if not s:
        return 0.0
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])


# --- force calls -------------------------------------------------------------------------


def _steps(value: Any) -> float:
    """Every ``steps`` / ``*_steps`` count under ``value`` (stages included), summed."""
    total = 0.0
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key)
            if (name == "steps" or name.endswith("_steps")) and isinstance(item, int | float):
                if not isinstance(item, bool):
                    total += float(item)
            else:
                total += _steps(item)
    elif isinstance(value, list):
        total += sum(_steps(v) for v in value)
    return total


def call_bound(task_type: str, params: Mapping[str, Any]) -> float:
    """Force calls a task makes at most, as far as its parameters say: one per step
    (and the first evaluation), each point of a bulk modulus relaxed.  Heat capacity's
    displacements are unknown before phonopy runs: past tasks' ratio covers them."""
    steps = _steps(params)
    if task_type == "single-point-energy":
        return 1.0
    if task_type == "interaction-energy":
        return 3.0 + steps
    if task_type == "bulk-modulus":
        points = params.get("num_points", 9)
        points = points if isinstance(points, int) and not isinstance(points, bool) else 9
        return 1.0 + steps * (1 + points) + points
    return 1.0 + steps


def call_key(task_type: str, params: Mapping[str, Any]) -> str:
    return f"{task_type}|{params.get('protocol') or 'default'}"


# --- the store ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    memory_mb: float  # with the safety margin
    memory_central_mb: float
    seconds_per_call: float | None
    force_calls: float
    duration_s: float | None
    key: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "memory_mb": round(self.memory_mb, 1),
            "memory_central_mb": round(self.memory_central_mb, 1),
            "seconds_per_force_call": None
            if self.seconds_per_call is None
            else round(self.seconds_per_call, 6),
            "force_calls": round(self.force_calls),
            "duration_s": None if self.duration_s is None else round(self.duration_s, 1),
            "fit": self.key,
        }


class CostModel:
    """The estimates of one spool; reads are cached by the file's change time."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / ESTIMATES_NAME
        self._doc: dict[str, Any] = {}
        self._stamp: tuple[int, int] | None = None
        self._lines: dict[tuple[str, str], Line | None] = {}

    # -- reading
    def doc(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            self._lines = {}
            try:
                loaded = json.loads(self.path.read_text()) if stamp else {}
            except (OSError, ValueError):
                loaded = {}
            self._doc = loaded if isinstance(loaded, dict) else {}
        return self._doc

    def keys(self) -> list[str]:
        return sorted(self.doc().get("models", {}))

    def line(self, key: str, what: str) -> Line | None:
        """The fit of ``what`` (``memory_mb`` or ``seconds_per_call``) for a key."""
        doc = self.doc()
        if (key, what) not in self._lines:
            entry = doc.get("models", {}).get(key) or {}
            pts = [
                (p.get("natoms", 0), p.get("pairs", 0), p.get(what))
                for p in entry.get("points", [])
                if isinstance(p, dict) and isinstance(p.get(what), int | float)
            ]
            self._lines[(key, what)] = fit_line(pts)
        return self._lines[(key, what)]

    def memory_floor(self, key: str, natoms: float, pairs: float) -> float:
        """What an out-of-memory failure at no more atoms and pairs proved necessary."""
        entry = self.doc().get("models", {}).get(key) or {}
        floors = [
            float(o["memory_mb"])
            for o in entry.get("oom", [])
            if isinstance(o, dict) and o.get("natoms", 0) <= natoms and o.get("pairs", 0) <= pairs
        ]
        return max(floors, default=0.0)

    def calls(self, task_type: str, params: Mapping[str, Any]) -> float:
        bound = call_bound(task_type, params)
        ratios = self.doc().get("calls", {}).get(call_key(task_type, params)) or []
        ratios = [r for r in ratios if isinstance(r, int | float) and r > 0]
        if task_type == "heat-capacity" and not ratios:
            return bound
        return bound * _median(ratios) if ratios else bound

    def estimate(
        self,
        model: str,
        device: str,
        dtype: str,
        natoms: float,
        pairs: float,
        task_type: str = "single-point-energy",
        params: Mapping[str, Any] | None = None,
    ) -> Estimate | None:
        """None without a memory fit for this model, device and dtype."""
        key = fit_key(model, device, dtype)
        mem = self.line(key, "memory_mb")
        if mem is None:
            return None
        central = mem(natoms, pairs)
        memory = max(central * (1.0 + mem.margin), self.memory_floor(key, natoms, pairs))
        t = self.line(key, "seconds_per_call")
        per_call = t(natoms, pairs) if t is not None else None
        calls = self.calls(task_type, params or {})
        duration = per_call * calls if per_call is not None else None
        return Estimate(memory, central, per_call, calls, duration, key)

    # -- writing
    def _update(self, change: Any) -> None:
        with _lock:
            self._stamp = None
            doc = dict(self.doc())
            change(doc)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
            self._stamp = None

    def add_points(
        self, key: str, points: list[dict[str, Any]], *, replace_source: str | None = None
    ) -> None:
        """Append points; with ``replace_source`` earlier points of that source go first
        (a new calibration replaces the last one, measured tasks stay)."""

        def change(doc: dict[str, Any]) -> None:
            models = doc.setdefault("models", {})
            entry = models.setdefault(key, {})
            old = [
                p
                for p in entry.get("points", [])
                if replace_source is None or p.get("source") != replace_source
            ]
            entry["points"] = (old + points)[-MAX_POINTS:]

        self._update(change)

    def add_oom(self, key: str, natoms: float, pairs: float, memory_mb: float) -> None:
        def change(doc: dict[str, Any]) -> None:
            entry = doc.setdefault("models", {}).setdefault(key, {})
            ooms = list(entry.get("oom", []))
            ooms.append(
                {"natoms": natoms, "pairs": pairs, "memory_mb": memory_mb, "t": time.time()}
            )
            entry["oom"] = ooms[-MAX_POINTS:]

        self._update(change)

    def add_calls(self, task_type: str, params: Mapping[str, Any], actual: float) -> None:
        bound = call_bound(task_type, params)
        if not (bound > 0 and actual > 0):
            return

        def change(doc: dict[str, Any]) -> None:
            calls = doc.setdefault("calls", {})
            key = call_key(task_type, params)
            calls[key] = (list(calls.get(key, [])) + [round(actual / bound, 6)])[-MAX_RATIOS:]

        self._update(change)

    def learn(self, result: Mapping[str, Any], task_type: str, params: Mapping[str, Any]) -> bool:
        """Take a finished task's measurement; False when its result has none."""
        metrics = result.get("metrics") if isinstance(result, Mapping) else None
        m = metrics.get("measurement") if isinstance(metrics, Mapping) else None
        prov = result.get("provenance") if isinstance(result, Mapping) else None
        if not isinstance(m, Mapping) or not isinstance(prov, Mapping):
            return False
        point = measurement_point(m)
        key = fit_key(
            str(prov.get("model")),
            str(prov.get("device_name") or prov.get("device")),
            str(prov.get("dtype")),
        )
        if point is not None:
            self.add_points(key, [point])
        calls = m.get("force_calls")
        if isinstance(calls, int | float) and calls > 0:
            self.add_calls(task_type, params, float(calls))
        return point is not None


def measurement_point(m: Mapping[str, Any]) -> dict[str, Any] | None:
    """A fit point from a task's ``metrics.measurement``; None when it lacks a number."""
    natoms, pairs = m.get("natoms"), m.get("neighbour_pairs")
    memory, per_call = m.get("peak_memory_mb"), m.get("force_call_seconds")
    if not isinstance(natoms, int | float) or not isinstance(pairs, int | float):
        return None
    if not isinstance(memory, int | float) or memory <= 0:
        return None
    return {
        "natoms": natoms,
        "pairs": pairs,
        "memory_mb": float(memory),
        "seconds_per_call": float(per_call) if isinstance(per_call, int | float) else None,
        "t": time.time(),
    }

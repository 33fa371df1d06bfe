"""The clients' MOFSimBench methods: start or continue a campaign, list campaigns, fetch
the report against the benchmark's DFT references.

A campaign's structures travel with the request, so the server needs no copy of the
benchmark: ``benchmark_files(folder)`` reads the CIFs of a benchmark folder (the one
holding ``main_set/``, ``hcmof/`` and ``copper/``) keyed by their path in it.  The server
takes the files its suite needs and names the others in ``unknown_files``.

``BenchMethods`` is mixed into ``MOFSimClient``, ``AsyncBenchMethods`` into
``AsyncMOFSimClient``.  The answers are the server's documents, as dicts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mofsim_client.errors import ValidationError

SUBFOLDERS = ("main_set", "hcmof", "copper")
# Submitting a main suite is some 500 submissions on the server: allow it the time.
CAMPAIGN_TIMEOUT_S = 1800.0
REPORT_TIMEOUT_S = 600.0

Structures = Mapping[str, str] | str | os.PathLike[str]


def benchmark_files(folder: str | os.PathLike[str]) -> dict[str, str]:
    """Every CIF of a MOFSimBench structure folder, keyed as the server expects
    (``main_set/MOF-5_primitive.cif``)."""
    root = Path(folder).expanduser()
    files = {
        f"{sub}/{path.name}": path.read_text()
        for sub in SUBFOLDERS
        for path in sorted((root / sub).glob("*.cif"))
    }
    if not files:
        raise ValidationError(
            f"no CIF files under {root}/{{{','.join(SUBFOLDERS)}}}: give the benchmark's "
            "structure folder",
            field="structures",
        )
    return files


def campaign_body(
    model: str,
    structures: Structures,
    suite: str,
    with_d3: bool,
    overrides: Mapping[str, Mapping[str, Any]] | None,
    retry_failed: bool,
) -> dict[str, Any]:
    files = dict(structures) if isinstance(structures, Mapping) else benchmark_files(structures)
    return {
        "model": model,
        "suite": suite,
        "with_d3": with_d3,
        "overrides": {k: dict(v) for k, v in (overrides or {}).items()},
        "retry_failed": retry_failed,
        "structures": files,
    }


def report_params(campaigns: Iterable[str] | None) -> dict[str, str] | None:
    ids = list(campaigns or [])
    return {"campaign": ",".join(ids)} if ids else None


class BenchMethods:
    """Mixed into ``MOFSimClient``."""

    if TYPE_CHECKING:

        def request(
            self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
        ) -> Any: ...

    def start_bench_campaign(
        self,
        model: str,
        structures: Structures,
        suite: str = "quick",
        *,
        with_d3: bool = False,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        retry_failed: bool = False,
    ) -> dict[str, Any]:
        """Start MOFSimBench on ``model`` (``quick``, ``main`` or ``full``), or continue
        the campaign: entries that have a task keep it, so calling again after an
        interruption submits nothing twice.  ``structures``: the benchmark's folder, or
        a mapping from its paths to CIF text.  ``overrides`` replace protocol values per
        task type (``{"stability": {"npt_steps": 100}}``).  Returns the campaign:
        ``campaign_id``, ``entries``, ``states``, ``submitted``, ``unknown_files``."""
        body = campaign_body(model, structures, suite, with_d3, overrides, retry_failed)
        data: dict[str, Any] = self.request(
            "POST", "bench/campaigns", json=body, timeout=CAMPAIGN_TIMEOUT_S, idempotent=True
        )
        return data

    def list_bench_campaigns(self) -> list[dict[str, Any]]:
        """The campaigns this key may see, each with its entries counted by state."""
        items: list[dict[str, Any]] = self.request("GET", "bench/campaigns")["items"]
        return items

    def get_bench_report(self, campaigns: Iterable[str] | None = None) -> dict[str, Any]:
        """The paper's metrics against DFT for the named campaigns (default: all this key
        may see): ``report`` (the numbers), ``markdown`` and ``html`` (plots inlined)."""
        data: dict[str, Any] = self.request(
            "GET", "bench/report", params=report_params(campaigns), timeout=REPORT_TIMEOUT_S
        )
        return data


class AsyncBenchMethods:
    """Mixed into ``AsyncMOFSimClient``; see ``MOFSimClient`` for each method."""

    if TYPE_CHECKING:

        async def request(
            self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
        ) -> Any: ...

    async def start_bench_campaign(
        self,
        model: str,
        structures: Structures,
        suite: str = "quick",
        *,
        with_d3: bool = False,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        retry_failed: bool = False,
    ) -> dict[str, Any]:
        body = campaign_body(model, structures, suite, with_d3, overrides, retry_failed)
        data: dict[str, Any] = await self.request(
            "POST", "bench/campaigns", json=body, timeout=CAMPAIGN_TIMEOUT_S, idempotent=True
        )
        return data

    async def list_bench_campaigns(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.request("GET", "bench/campaigns"))["items"]
        return items

    async def get_bench_report(self, campaigns: Iterable[str] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = await self.request(
            "GET", "bench/report", params=report_params(campaigns), timeout=REPORT_TIMEOUT_S
        )
        return data

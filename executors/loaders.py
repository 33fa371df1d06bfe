"""Turn a catalogue entry into a ready ASE calculator (plus D3 when asked).

Foundation weights that are not bundled are fetched by the model package's own download
code on a connected machine.  Before handing over to it we look in the package's cache
and probe the download host with a short timeout, so that an offline machine answers
``ModelUnavailable`` in seconds instead of hanging on socket timeouts.  Setting
``MOFSIM_OFFLINE=1`` skips the probe and never touches the network.

ML packages are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import os
import platform
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from executors.models import ModelSpec, custom_spec, normalize_precision
from spool.errors import ModelUnavailable, ValidationError

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

PROBE_TIMEOUT_S = 5.0
D3_CUTOFF_BOHR = 40.0

_PACKAGES = {
    "sevennet": ["sevenn"],
    "mace": ["mace-torch", "e3nn"],
    "orb": ["orb-models"],
    "ase": [],
}
# orb-models architecture builders for custom files, with their usual neighbour limits.
_ORB_BUILDERS = {
    "v2": ("orb_v2_architecture", 20),
    "v3-conservative": ("orb_v3_conservative_architecture", 120),
    "v3-direct": ("orb_v3_direct_architecture", 120),
}


def prepare_torch() -> None:
    """torch >= 2.6 loads with weights_only=True; e3nn's constants and SevenNet's
    checkpoints hold ``slice`` objects, so it must be allowed before they are imported."""
    import torch

    if slice not in torch.serialization.get_safe_globals():
        torch.serialization.add_safe_globals([slice])


def check_d3(spec: ModelSpec, with_d3: bool, force_d3: bool = False) -> None:
    if with_d3 and spec.d3_trained and not force_d3:
        raise ValidationError(
            f"model {spec.key} was trained with D3 dispersion already; adding a second D3 "
            "term would double count it (set force_d3 to do it anyway)",
            field="with_d3",
        )


def load_calculator(
    spec: ModelSpec,
    device: str = "cpu",
    dtype: str = "float32",
    with_d3: bool = False,
    force_d3: bool = False,
    models_root: Path | None = None,
) -> Calculator:
    """A calculator for ``spec`` on ``device``; ``SumCalculator([model, D3])`` when
    ``with_d3``.  Raises ValidationError for refused combinations and ModelUnavailable
    when the weights cannot be obtained or loaded."""
    dtype = normalize_precision(dtype)
    check_d3(spec, with_d3, force_d3)
    if spec.is_custom and models_root is not None:
        # Re-read meta.json: the files on disk are the truth (a model may be re-uploaded).
        spec = custom_spec(str(spec.extra.get("model_id", spec.aliases[0])), models_root)
    if spec.framework == "sevennet" and dtype == "float64":
        raise ValidationError("SevenNet models run in float32 only", field="dtype")
    if spec.framework == "ase":
        calc = _load_ase(spec)
    else:
        with _torch_state_restored():
            calc = _load_torch_model(spec, device, dtype)
    if with_d3:
        calc = add_d3(calc, device)
    return calc


def add_d3(calc: Calculator, device: str = "cpu") -> Calculator:
    """PROTOCOLS.md: torch-dftd D3(BJ), PBE parameters, 40 Bohr cutoff, no three-body
    term, float32."""
    import torch
    from ase.calculators.mixing import SumCalculator
    from ase.units import Bohr
    from torch_dftd.torch_dftd3_calculator import TorchDFTD3Calculator

    d3 = TorchDFTD3Calculator(
        device=device,
        damping="bj",
        xc="pbe",
        cutoff=D3_CUTOFF_BOHR * Bohr,
        abc=False,
        dtype=torch.float32,
    )
    # SumCalculator derives from ASE's BaseCalculator, not Calculator; atoms and the
    # optimizers treat both alike.
    return cast("Calculator", SumCalculator([calc, d3]))


def describe_versions(spec: ModelSpec) -> dict[str, Any]:
    """Package versions behind a result, for reproducibility records (nothing imported)."""
    names = ["ase", "torch", "numpy", *_PACKAGES.get(spec.framework, []), "torch-dftd"]
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "model": spec.key,
        "framework": spec.framework,
        "source": spec.source,
        "python": platform.python_version(),
        "packages": versions,
    }


# --- per-framework loaders -------------------------------------------------------------


def _load_ase(spec: ModelSpec) -> Calculator:
    if spec.weights == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    from ase.calculators.lj import LennardJones

    return LennardJones()


def _load_torch_model(spec: ModelSpec, device: str, dtype: str) -> Calculator:
    prepare_torch()
    if spec.is_custom:
        return _load_custom(spec, device, dtype)
    if spec.framework == "sevennet":
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator(spec.weights, device=device)
    if spec.framework == "mace":
        return _load_mace_foundation(spec, device, dtype)
    if spec.framework == "orb":
        return _load_orb_foundation(spec, device, dtype)
    raise ModelUnavailable(f"no loader for framework {spec.framework!r}", field="model")


def _load_custom(spec: ModelSpec, device: str, dtype: str) -> Calculator:
    path = Path(spec.weights)
    if not path.is_file():
        raise ModelUnavailable(
            f"weights file of {spec.key} is missing ({path.name})", field="model"
        )
    config = dict(spec.extra.get("config") or {})
    try:
        if spec.framework == "mace":
            from mace.calculators import MACECalculator

            return MACECalculator(model_paths=str(path), device=device, default_dtype=dtype)
        if spec.framework == "sevennet":
            from sevenn.calculator import SevenNetCalculator

            return SevenNetCalculator(
                model=str(path), device=device, file_type=str(config.get("file_type", "checkpoint"))
            )
        return _load_orb_file(path, config, device, dtype)
    except (ModelUnavailable, ValidationError):
        raise
    except Exception as exc:
        raise ModelUnavailable(
            f"cannot load {spec.key} ({spec.framework} file "
            f"{path.name}): {type(exc).__name__}: {exc}",
            field="model",
        ) from exc


def _mace_cache_candidates(spec: ModelSpec) -> tuple[str, list[Path]]:
    """The download URL and where mace-torch looks for (or puts) the file."""
    from mace.calculators import foundations_models as fm
    from mace.tools.utils import get_cache_dir

    cache = Path(get_cache_dir())
    if spec.key == "mace-off23":
        url = fm.mace_off_urls[spec.weights]
        return url, [cache / os.path.basename(url).split("?")[0]]
    url = fm.mace_mp_urls[spec.weights]
    name = "".join(c for c in os.path.basename(url) if c.isalnum() or c in "_")
    candidates = [cache / name]
    if spec.weights == "medium-mpa-0":
        candidates.insert(0, Path(fm.local_model_path))
    return url, candidates


def _load_mace_foundation(spec: ModelSpec, device: str, dtype: str) -> Calculator:
    from mace.calculators import foundations_models as fm

    url, candidates = _mace_cache_candidates(spec)
    if not any(p.is_file() for p in candidates):
        ensure_downloadable(spec, url, candidates[-1])
    try:
        if spec.key == "mace-off23":
            return fm.mace_off(model=spec.weights, device=device, default_dtype=dtype)
        return fm.mace_mp(model=spec.weights, device=device, default_dtype=dtype)
    except Exception as exc:
        raise _unavailable(spec, exc, candidates[-1]) from exc


def _load_orb_foundation(spec: ModelSpec, device: str, dtype: str) -> Calculator:
    from cached_path import get_cache_dir
    from cached_path.util import find_latest_cached, resource_to_filename
    from orb_models.forcefield import pretrained

    builder = pretrained.ORB_PRETRAINED_MODELS[spec.weights]
    url = str(inspect.signature(builder).parameters["weights_path"].default)
    cached = find_latest_cached(url)
    if cached is None:
        ensure_downloadable(spec, url, Path(get_cache_dir()) / resource_to_filename(url))
    try:
        # A cached file is handed over by path so that cached_path skips its ETag request.
        model = builder(
            weights_path=str(cached) if cached else url,
            device=device,
            precision=_orb_precision(dtype),
            compile=False,
        )
    except Exception as exc:
        raise _unavailable(spec, exc, None) from exc
    return _orb_calculator(model, device, dtype)


def _load_orb_file(path: Path, config: dict[str, Any], device: str, dtype: str) -> Calculator:
    """A state dict saved from an orb-models regressor.  ``config.architecture`` is a
    builder (``v2``, ``v3-conservative``, ``v3-direct``, with optional
    ``architecture_kwargs`` and ``system_config``) or a published model name whose
    architecture the weights share (e.g. ``orb-v3-conservative-inf-omat``).  Without it,
    the default-size builders are tried in turn."""
    from orb_models.forcefield import pretrained
    from orb_models.forcefield.atomic_system import SystemConfig

    precision = _orb_precision(dtype)
    arch = config.get("architecture")
    if arch in pretrained.ORB_PRETRAINED_MODELS and arch not in _ORB_BUILDERS:
        model = pretrained.ORB_PRETRAINED_MODELS[arch](
            weights_path=str(path), device=device, precision=precision, compile=False
        )
        return _orb_calculator(model, device, dtype)
    if arch is not None and arch not in _ORB_BUILDERS:
        raise ModelUnavailable(
            f"unknown ORB architecture {arch!r}; use one of {', '.join(_ORB_BUILDERS)} or a "
            "published orb-models name",
            field="model",
        )
    errors = []
    for name in [arch] if arch else list(_ORB_BUILDERS):
        func_name, neighbours = _ORB_BUILDERS[name]
        system = {
            "radius": 6.0,
            "max_num_neighbors": neighbours,
            **(config.get("system_config") or {}),
        }
        build = getattr(pretrained, func_name)
        try:
            model = build(
                system_config=SystemConfig(**system), **(config.get("architecture_kwargs") or {})
            )
            model = pretrained.load_model(
                model, str(path), device, precision=precision, compile=False
            )
        except RuntimeError as exc:  # state-dict mismatch: try the next architecture
            errors.append(f"{name}: {str(exc).splitlines()[0]}")
            continue
        return _orb_calculator(model, device, dtype)
    raise ModelUnavailable(
        "ORB weights match no known architecture: " + "; ".join(errors), field="model"
    )


def _orb_precision(dtype: str) -> str:
    return "float64" if dtype == "float64" else "float32-high"


def _orb_calculator(model: Any, device: str, dtype: str) -> Calculator:
    """orb-models reads torch's process-wide default dtype (and matmul precision) when
    it featurizes atoms; several calculators share one executor, so pin them per call."""
    import torch
    from ase.calculators.calculator import all_changes
    from orb_models.forcefield.calculator import ORBCalculator

    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    matmul = "highest" if dtype == "float64" else "high"

    class PinnedORBCalculator(ORBCalculator):  # type: ignore[misc]
        def calculate(
            self, atoms: Any = None, properties: Any = None, system_changes: Any = all_changes
        ) -> None:
            with _torch_state(torch_dtype, matmul):
                super().calculate(atoms, properties, system_changes)

    return PinnedORBCalculator(model, device=device)


@contextlib.contextmanager
def _torch_state(dtype: Any, matmul: str) -> Iterator[None]:
    import torch

    prev_dtype, prev_matmul = torch.get_default_dtype(), torch.get_float32_matmul_precision()
    torch.set_default_dtype(dtype)
    torch.set_float32_matmul_precision(matmul)
    try:
        yield
    finally:
        torch.set_default_dtype(prev_dtype)
        torch.set_float32_matmul_precision(prev_matmul)


@contextlib.contextmanager
def _torch_state_restored() -> Iterator[None]:
    """MACE and ORB set process-wide torch defaults while loading; undo that so one
    model's load does not change how the next one runs."""
    import torch

    with _torch_state(torch.get_default_dtype(), torch.get_float32_matmul_precision()):
        yield


# --- network -------------------------------------------------------------------------


def probe_url(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a TCP connection to the URL's host (or its proxy) opens within
    ``timeout``; otherwise the reason.  Runs in a thread because name resolution has no
    timeout of its own."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host, port = proxy_parts.hostname or "", proxy_parts.port or 80
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"cannot reach {host}:{port} ({exc})")

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
    if not outcome:
        return f"no answer from {host}:{port} within {timeout:.0f} s"
    return outcome[0]


def ensure_downloadable(spec: ModelSpec, url: str, place: Path) -> None:
    if os.environ.get("MOFSIM_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        reason = "offline mode (MOFSIM_OFFLINE) is set"
    else:
        reason = probe_url(url) or ""
    if reason:
        raise ModelUnavailable(
            f"weights for {spec.key} are not cached and cannot be downloaded: {reason}; "
            f"place the file from {url} at {place} or upload it as a custom model",
            field="model",
        )


def _unavailable(spec: ModelSpec, exc: BaseException, place: Path | None) -> ModelUnavailable:
    cause = exc.__cause__ or exc
    where = f"; place the file at {place} or upload it as a custom model" if place else ""
    return ModelUnavailable(
        f"cannot load {spec.key}: {type(cause).__name__}: {cause}{where}", field="model"
    )

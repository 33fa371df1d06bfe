"""Tiny, randomly initialised MACE and ORB models written the way users upload them.

They exercise the real loading code paths (pickled MACE module, ORB state dict) in
seconds; their energies mean nothing physically.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from executors.loaders import prepare_torch

TINY_ORB_KWARGS = {
    "latent_dim": 16,
    "base_mlp_hidden_dim": 32,
    "head_mlp_hidden_dim": 16,
    "num_message_passing_steps": 1,
}


@functools.lru_cache(maxsize=4)  # e3nn code generation makes each build take seconds
def build_tiny_mace(
    atomic_numbers: tuple[int, ...] = (13, 29),
    r_max: float = 4.0,
    seed: int = 0,
    plain: bool = False,
) -> Any:
    """A ScaleShiftMACE with 8 channels, two interactions, float64 (as MACE saves);
    ``plain``: a MACE without the scale and shift (one with no weights-only form here).
    Shared between callers: save it, do not modify it."""
    prepare_torch()
    import numpy as np
    import torch
    from e3nn import o3
    from mace import modules

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(seed)
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        scale_shift = {} if plain else {"atomic_inter_scale": 1.0, "atomic_inter_shift": 0.0}
        return (modules.MACE if plain else modules.ScaleShiftMACE)(
            r_max=r_max,
            num_bessel=4,
            num_polynomial_cutoff=5,
            max_ell=2,
            interaction_cls=block,
            interaction_cls_first=block,
            num_interactions=2,
            num_elements=len(atomic_numbers),
            hidden_irreps=o3.Irreps("8x0e+8x1o"),
            MLP_irreps=o3.Irreps("8x0e"),
            atomic_energies=np.linspace(-3.0, -4.0, len(atomic_numbers)),
            avg_num_neighbors=8.0,
            atomic_numbers=list(atomic_numbers),
            correlation=2,
            gate=torch.nn.functional.silu,
            **scale_shift,
        )
    finally:
        torch.set_default_dtype(previous)


def build_tiny_orb(seed: int = 0) -> Any:
    """An orb-v3 conservative regressor with 16 latent features and one message pass."""
    prepare_torch()
    import torch
    from orb_models.forcefield import pretrained
    from orb_models.forcefield.atomic_system import SystemConfig

    previous = torch.get_default_dtype()
    try:
        torch.manual_seed(seed)
        return pretrained.orb_v3_conservative_architecture(
            system_config=SystemConfig(radius=6.0, max_num_neighbors=20), **TINY_ORB_KWARGS
        )
    finally:
        torch.set_default_dtype(previous)


def write_custom_model(
    models_root: Path,
    model_id: str,
    framework: str,
    file_name: str,
    payload: Any = None,
    raw: bytes | None = None,
    **meta: Any,
) -> Path:
    """``models_root/model_id/`` with meta.json and the weights (a torch object saved
    with ``torch.save``, or raw bytes)."""
    folder = models_root / model_id
    folder.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        (folder / file_name).write_bytes(raw)
    else:
        import torch

        torch.save(payload, folder / file_name)
    doc = {
        "name": model_id,
        "framework": framework,
        "with_d3": False,
        "config": {"precision": "float32"},
        "file": file_name,
        **meta,
    }
    (folder / "meta.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder


def trust_custom_model(models_root: Path, model_id: str) -> dict[str, Any]:
    """What validating does, without the sandbox: load the upload, write its safe form
    where the daemon keeps it, and record a passing verdict bound to both."""
    from executors.models import custom_spec
    from executors.safe_form import form_dir
    from executors.validate_model import validate
    from executors.verdicts import file_digest, write_verdict

    folder = form_dir(models_root, model_id)
    outcome = validate(models_root, model_id, convert_to=folder)
    outcome["exit_code"] = 0
    written = outcome.get("safe_form", {}).get("written")
    safe = {p.name: file_digest(p) for p in sorted(folder.iterdir())} if written else None
    weights = Path(custom_spec(model_id, models_root).weights)
    return write_verdict(models_root, model_id, file_digest(weights), outcome, safe)


LJ_CONFIG = {
    "inputs": ["positions", "edge_index", "shifts"],
    "outputs": ["energy"],
    "cutoff": 5.0,
    "precision": "float64",
}


def torchscript_lj(
    sigma: float = 2.3, epsilon: float = 0.01, rc: float = 5.0, returns: str = "energy"
) -> bytes:
    """A TorchScript archive of ASE's Lennard-Jones (the pair energy shifted to zero at
    ``rc``, no smoothing) called as ``LJ_CONFIG`` says; ``returns``: ``energy`` (forces
    by autograd, outside), ``dict`` ({"energy", "forces"}, forces by autograd inside),
    ``flat-forces`` (forces of a wrong shape) or ``pair-energies`` (not a scalar)."""
    import io

    import torch

    class Pairs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sigma, self.epsilon, self.rc = sigma, epsilon, rc

        def pairs(
            self, pos: torch.Tensor, edges: torch.Tensor, shifts: torch.Tensor
        ) -> torch.Tensor:
            d = pos[edges[1]] - pos[edges[0]] + shifts
            c6 = (self.sigma**2 / (d * d).sum(-1)) ** 3
            e0 = 4 * self.epsilon * ((self.sigma / self.rc) ** 12 - (self.sigma / self.rc) ** 6)
            return 0.5 * (4 * self.epsilon * (c6 * c6 - c6) - e0)

    class Energy(Pairs):
        def forward(
            self, pos: torch.Tensor, edges: torch.Tensor, shifts: torch.Tensor
        ) -> torch.Tensor:
            return self.pairs(pos, edges, shifts).sum()

    class PairEnergies(Pairs):
        def forward(
            self, pos: torch.Tensor, edges: torch.Tensor, shifts: torch.Tensor
        ) -> torch.Tensor:
            return self.pairs(pos, edges, shifts)

    class WithForces(Pairs):
        def __init__(self, flat: bool) -> None:
            super().__init__()
            self.flat = flat

        def forward(
            self, pos: torch.Tensor, edges: torch.Tensor, shifts: torch.Tensor
        ) -> dict[str, torch.Tensor]:
            pos = pos.detach().requires_grad_(True)
            energy = self.pairs(pos, edges, shifts).sum()
            grad = torch.autograd.grad([energy], [pos])[0]
            assert grad is not None
            forces = -grad.reshape(-1) if self.flat else -grad
            return {"energy": energy.detach(), "forces": forces}

    model = {
        "energy": Energy,
        "pair-energies": PairEnergies,
        "dict": lambda: WithForces(False),
        "flat-forces": lambda: WithForces(True),
    }[returns]()
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buf)
    return buf.getvalue()

"""Generic PyTorch: a TorchScript module whose interface the upload's config describes.

No foundation models: only uploads, archives written by ``torch.jit.save`` with a
``config`` saying what their ``forward`` takes and returns, in which units
(``executors.torchscript_interface``; checked at upload).  torch reads a TorchScript
archive without Python's unpickler, so after validation in the sandbox executors load
the upload as it is (``executors.torchscript_calc``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from executors.families import Family, Package
from executors.torchscript_interface import check_config
from spool.errors import ModelUnavailable

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

    from executors.models import ModelSpec


def load_foundation(spec: ModelSpec, device: str, dtype: str) -> Calculator:
    raise ModelUnavailable("generic PyTorch models come only as uploads", field="model")


def load_file(path: Path, config: dict[str, Any], device: str, dtype: str) -> Calculator:
    from executors.torchscript_calc import load

    return load(path, config, device, dtype)


FAMILY = Family(
    name="pytorch",
    label="PyTorch (TorchScript)",
    description="Any TorchScript potential, called as its upload's config describes",
    packages=(Package("torch", "torch"),),
    load_foundation=load_foundation,
    load_custom=load_file,
    custom_extensions=(".pt", ".pth"),
    check_config=check_config,
    rank=80,
)

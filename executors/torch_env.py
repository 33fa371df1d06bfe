"""Process-wide torch settings that model packages read or change while they load.

torch is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def prepare_torch() -> None:
    """torch >= 2.6 loads with weights_only=True; e3nn's constants and SevenNet's
    checkpoints hold ``slice`` objects, so it must be allowed before they are imported."""
    import torch

    if slice not in torch.serialization.get_safe_globals():
        torch.serialization.add_safe_globals([slice])


@contextlib.contextmanager
def torch_state(dtype: Any, matmul: str) -> Iterator[None]:
    """torch's default dtype and float32 matmul precision set to these within the block."""
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
def torch_state_restored() -> Iterator[None]:
    """MACE and ORB set process-wide torch defaults while loading; undo that so one
    model's load does not change how the next one runs."""
    import torch

    with torch_state(torch.get_default_dtype(), torch.get_float32_matmul_precision()):
        yield

"""Uploaded models in a form that loads without running code: JSON plus a state dict.

An uploaded MACE or SevenNet file is a pickle, and loading a pickle runs whatever it
says.  After the validator has loaded such a file (in the sandbox), it writes the same
model again as data only::

    config.json   {"format": 1, "family": "mace", "kind": "ScaleShiftMACE",
                   "config": <tagged JSON>}
    state.pt      the state dict (name -> tensor), read with torch.load(weights_only=True)

and executors build the model from these with the family's own classes.  Whatever the
sandboxed validator wrote, reading it back cannot run code: JSON is parsed, torch's
weights-only unpickler accepts tensors and plain containers only, and names in the
configuration resolve only through the family's allowlist (:class:`Codec`).

Tagged JSON: a value JSON cannot hold is an object with one ``$`` key:
``{"$array": [dtype, shape, values]}`` (numpy), ``{"$tensor": [dtype, shape, values]}``,
``{"$map": [[key, value], ...]}`` (keys that are not strings), ``{"$tuple": [...]}``,
``{"$ref": name}`` (a class or function of the allowlist) and ``{"$make": [name, text]}``
(an object the allowlist rebuilds from text, such as e3nn's Irreps).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spool.errors import ModelUnavailable

FORMAT = 1
FORMS_DIR = ".converted"
CONFIG_FILE = "config.json"
STATE_FILE = "state.pt"
# What the daemon copies out of the sandbox: a configuration is kilobytes, weights are
# at most what an upload may be.
MAX_CONFIG_BYTES = 16 << 20
_DEPTH = 32


class Unconvertible(Exception):
    """The model holds something the safe form cannot express."""


@dataclass(frozen=True)
class Codec:
    """A family's allowlist: the only names a configuration may refer to."""

    # name -> class or function
    refs: Mapping[str, Any] = field(default_factory=dict)
    # name -> (type, rebuild from text); encoded with str()
    makers: Mapping[str, tuple[type, Callable[[str], Any]]] = field(default_factory=dict)


def form_dir(models_root: Path, model_id: str) -> Path:
    return Path(models_root) / FORMS_DIR / model_id


def encode(value: Any, codec: Codec, depth: int = 0) -> Any:
    """``value`` as tagged JSON; Unconvertible for anything outside the codec."""
    if depth > _DEPTH:
        raise Unconvertible("configuration nested too deeply")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unconvertible(f"non-finite number {value} in the configuration")
        return value
    for name, ref in codec.refs.items():
        if value is ref:
            return {"$ref": name}
    for name, (kind, _) in codec.makers.items():
        if isinstance(value, kind):
            return {"$make": [name, str(value)]}
    module = type(value).__module__.split(".")[0]
    if module == "numpy" and hasattr(value, "dtype") and hasattr(value, "shape"):
        if value.shape == ():
            return encode(value.item(), codec, depth + 1)
        return {"$array": [str(value.dtype), list(value.shape), value.reshape(-1).tolist()]}
    if module == "torch":
        if type(value).__name__ == "device":
            return {"$make": ["device", "cpu"]}
        if hasattr(value, "detach"):
            flat = value.detach().cpu()
            dtype = str(flat.dtype).removeprefix("torch.")
            return {"$tensor": [dtype, list(flat.shape), flat.reshape(-1).tolist()]}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v, codec, depth + 1) for v in value]}
    if isinstance(value, list):
        return [encode(v, codec, depth + 1) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: encode(v, codec, depth + 1) for k, v in value.items()}
        return {
            "$map": [
                [encode(k, codec, depth + 1), encode(v, codec, depth + 1)] for k, v in value.items()
            ]
        }
    raise Unconvertible(f"cannot express a {type(value).__module__}.{type(value).__qualname__}")


def decode(doc: Any, codec: Codec, depth: int = 0) -> Any:
    """The value tagged JSON stands for; ModelUnavailable for what the codec does not know."""
    if depth > _DEPTH:
        raise _bad("configuration nested too deeply")
    if isinstance(doc, list):
        return [decode(v, codec, depth + 1) for v in doc]
    if not isinstance(doc, dict):
        return doc
    tags = [k for k in doc if k.startswith("$")]
    if not tags:
        return {k: decode(v, codec, depth + 1) for k, v in doc.items()}
    if len(doc) != 1:
        raise _bad(f"tagged value with extra keys: {sorted(doc)[:4]}")
    tag, body = tags[0], doc[tags[0]]
    if tag == "$ref" and isinstance(body, str) and body in codec.refs:
        return codec.refs[body]
    if tag == "$make" and _pair(body) and body[0] == "device":
        return "cpu"
    if tag == "$make" and _pair(body) and body[0] in codec.makers:
        return codec.makers[body[0]][1](body[1])
    if tag == "$tuple" and isinstance(body, list):
        return tuple(decode(v, codec, depth + 1) for v in body)
    if tag == "$map" and isinstance(body, list) and all(_pair(p, str_second=False) for p in body):
        return {
            _hashable(decode(k, codec, depth + 1)): decode(v, codec, depth + 1) for k, v in body
        }
    if tag in ("$array", "$tensor") and _numeric(body):
        return _array(tag, body)
    raise _bad(f"unknown or malformed value {tag}: {str(body)[:80]}")


def _pair(body: Any, str_second: bool = True) -> bool:
    if not (isinstance(body, list) and len(body) == 2):
        return False
    return isinstance(body[0], str) and isinstance(body[1], str) if str_second else True


def _hashable(key: Any) -> Any:
    if isinstance(key, bool | int | float | str | tuple) or key is None:
        return key
    raise _bad("a mapping key is not a number or string")


def _numeric(body: Any) -> bool:
    return (
        isinstance(body, list)
        and len(body) == 3
        and isinstance(body[0], str)
        and isinstance(body[1], list)
        and all(isinstance(n, int) and n >= 0 for n in body[1])
        and isinstance(body[2], list)
        and all(isinstance(x, int | float) for x in body[2])
        and math.prod(body[1]) == len(body[2])
    )


_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"}


def _array(tag: str, body: list[Any]) -> Any:
    import numpy as np

    dtype, shape, values = body
    if dtype not in _DTYPES:
        raise _bad(f"unknown dtype {dtype!r}")
    arr = np.asarray(values, dtype=dtype).reshape(shape)
    if tag == "$array":
        return arr
    import torch

    return torch.from_numpy(arr.copy())


def _bad(message: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"the converted model's configuration is invalid: {message}", field="model"
    )


def write_form(
    folder: Path,
    family: str,
    kind: str,
    config: Mapping[str, Any],
    state: Mapping[str, Any],
    codec: Codec,
) -> list[Path]:
    """Write the safe form of a model into ``folder``; returns the files written."""
    import torch

    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise Unconvertible(f"the state dict holds entries that are not tensors: {bad[:3]}")
    doc = {"format": FORMAT, "family": family, "kind": kind, "config": encode(dict(config), codec)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(doc), encoding="utf-8")
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, folder / STATE_FILE)
    return [folder / CONFIG_FILE, folder / STATE_FILE]


def read_form(
    folder: Path, family: str, codec: Codec
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(kind, config, state)`` of a safe form; ModelUnavailable when it is not one."""
    import torch

    try:
        with open(folder / CONFIG_FILE, "rb", opener=_no_follow) as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise _bad("too large")
        doc = json.loads(raw)
    except (OSError, ValueError, RecursionError) as exc:
        raise _bad(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("family") != family:
        raise _bad(f"not a format-{FORMAT} {family} configuration")
    kind, config = doc.get("kind"), decode(doc.get("config"), codec)
    if not isinstance(kind, str) or not isinstance(config, dict):
        raise _bad("no model kind or configuration")
    try:
        with open(folder / STATE_FILE, "rb", opener=_no_follow) as fh:
            state = torch.load(fh, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - weights-only refusal or a broken file alike
        raise ModelUnavailable(
            f"the converted model's weights do not load as plain tensors: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}",
            field="model",
        ) from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise _bad("the weights are not a mapping of names to tensors")
    return kind, config, state


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def collect_form(source: Path, dest: Path, max_state_bytes: int) -> dict[str, str]:
    """Copy a safe form that an untrusted process wrote in ``source`` to ``dest``, reading
    nothing but the two regular files (no links followed, sizes capped), and return
    their SHA-256 digests; ModelUnavailable when they are not there as such."""
    import hashlib
    import shutil
    import stat
    import tempfile

    caps = {CONFIG_FILE: MAX_CONFIG_BYTES, STATE_FILE: max_state_bytes}
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".tmp-"))
    digests: dict[str, str] = {}
    try:
        dir_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for name, cap in caps.items():
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
                with os.fdopen(fd, "rb") as src, open(work / name, "wb") as out:
                    st = os.fstat(src.fileno())
                    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size > cap:
                        raise _bad(f"{name} is not a plain file within {cap} bytes")
                    digest, left = hashlib.sha256(), cap
                    while left >= 0 and (chunk := src.read(1 << 20)):
                        digest.update(chunk)
                        out.write(chunk)
                        left -= len(chunk)
                    if left < 0:
                        raise _bad(f"{name} grew past {cap} bytes")
                    out.flush()
                    os.fsync(out.fileno())
                digests[name] = digest.hexdigest()
        finally:
            os.close(dir_fd)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(work, dest)
    except OSError as exc:
        raise _bad(f"{type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return digests

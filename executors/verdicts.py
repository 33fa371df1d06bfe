"""Verdicts on uploaded custom models: the one place that says whether one may run.

A custom model is trusted only when the process that ran its validator (never the
validator itself, whose weights file is untrusted code) has written a passing verdict,
and the verdict's SHA-256 digest is that of the weights file as it is now::

    models_root/.verdicts/<model_id>.json   {"model_id", "sha256", "valid",
                                              "validated_at", "validation": {...}}

A MACE or SevenNet upload is a pickle of code, so executors never load it: they load the
safe form (``executors.safe_form``) the validator wrote, which the daemon copied out of
the sandbox into ``models_root/.converted/<model_id>/``; the verdict holds its digests
(``"safe_form": {"config.json": sha256, "state.pt": sha256}``), and :func:`trusted_form`
gives the folder only while they match.

The verdicts live beside the model folders, not in them: a model folder (its
``meta.json`` included) says nothing about trust, a folder without a verdict is not
trusted, and a weights file changed after validation is unvalidated.  The folder's dot
keeps it out of the catalogue (model ids never start with one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from executors.safe_form import CONFIG_FILE, FORMS_DIR, STATE_FILE

SAFE_FILES = (CONFIG_FILE, STATE_FILE)

VERDICTS_DIR = ".verdicts"
# (path, device, inode, size, mtime_ns, ctime_ns) -> digest: checking a task's model must not
# read hundreds of megabytes each time; any change of the file changes the key.
_DIGESTS: dict[tuple[str, int, int, int, int, int], str] = {}
_MAX_CACHED = 256


def verdict_path(models_root: Path, model_id: str) -> Path:
    return Path(models_root) / VERDICTS_DIR / f"{model_id}.json"


def file_digest(path: Path) -> str:
    """The SHA-256 of a file (hex), remembered while the file stays unchanged."""
    st = os.stat(path)
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    known = _DIGESTS.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    if len(_DIGESTS) >= _MAX_CACHED:
        _DIGESTS.clear()
    _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def read_verdict(models_root: Path, model_id: str) -> dict[str, Any] | None:
    """The recorded verdict, or None when there is none (or it does not parse)."""
    try:
        doc = json.loads(verdict_path(models_root, model_id).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("model_id") == model_id else None


def write_verdict(
    models_root: Path,
    model_id: str,
    sha256: str,
    outcome: dict[str, Any],
    safe_form: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Record the validator's outcome for the weights file whose digest (taken before
    the validator saw it) is ``sha256``; it passes when the validator exited 0 and said
    ``"ok": true``.  ``safe_form``: file name -> digest of the safe form copied out of
    the sandbox.  Written atomically by the caller's process."""
    doc = {
        "model_id": model_id,
        "sha256": sha256,
        "valid": outcome.get("ok") is True and outcome.get("exit_code") == 0,
        "validated_at": outcome.get("validated_at"),
        "validation": outcome,
        "safe_form": safe_form,
    }
    target = verdict_path(models_root, model_id)
    target.parent.mkdir(mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return doc


def remove_verdict(models_root: Path, model_id: str) -> None:
    verdict_path(models_root, model_id).unlink(missing_ok=True)
    shutil.rmtree(Path(models_root) / FORMS_DIR / model_id, ignore_errors=True)


def weights_trusted(models_root: Path, model_id: str, weights: Path) -> bool:
    """True when a passing verdict exists for exactly this weights file."""
    verdict = read_verdict(models_root, model_id)
    if verdict is None or verdict.get("valid") is not True:
        return False
    try:
        return verdict.get("sha256") == file_digest(weights)
    except OSError:
        return False


def trusted_form(models_root: Path, model_id: str) -> Path | None:
    """The folder of the model's safe form while a passing verdict vouches for exactly
    these files and for the upload as it is now; None otherwise."""
    verdict = read_verdict(models_root, model_id)
    files = verdict.get("safe_form") if verdict else None
    if not (model_trusted(models_root, model_id) and isinstance(files, dict) and files):
        return None
    if not all(isinstance(n, str) and n in SAFE_FILES for n in files):
        return None
    folder = Path(models_root) / FORMS_DIR / model_id
    try:
        same = all(file_digest(folder / name) == digest for name, digest in files.items())
    except OSError:
        return None
    return folder if same else None


def model_trusted(models_root: Path, model_id: str) -> bool:
    """:func:`weights_trusted` for a model folder, its weights file read from meta.json."""
    try:
        meta = json.loads((Path(models_root) / model_id / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    name = meta.get("file") if isinstance(meta, dict) else None
    # A bare file name only: the folder is the model's whole world.
    if not isinstance(name, str) or not name or Path(name).name != name or name[0] == ".":
        return False
    return weights_trusted(models_root, model_id, Path(models_root) / model_id / name)

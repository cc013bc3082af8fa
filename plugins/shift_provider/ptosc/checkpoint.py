"""pt-osc's checkpoint: the plugin that writes it after every chunk, and which pt-osc can run it.

pt-osc 3.2.1 has no --resume, but its NibbleIterator starts at a saved boundary when
asked; ``checkpoint.pm`` (a ``--plugin``) asks, and writes after every chunk
the chunk's upper boundary, the rows copied and the chunk size (JSON, written to a
temp file then renamed, so a reader never sees half a file). The plugin wraps pt-osc
internals, so it is only used with a script whose checksum is known here (Debian
bookworm's 3.2.1): any other ``pt_osc_path`` copies without it, from the first row.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

PLUGIN = Path(__file__).with_name("checkpoint.pm")
ENV_CHECKPOINT = "SHIFT_PTOSC_CHECKPOINT"
ENV_RESUME = "SHIFT_PTOSC_RESUME"
CHECKPOINT_FILE = "checkpoint.json"
RESUME_FILE = "resume.json"

# The scripts the plugin was written against and tested with: sha256 -> what it is.
KNOWN_SCRIPTS = {
    "1db39d5570f67a46b93088b9cf5818e1f716abbfcf6d0aed22f09930f277861d":
        "pt-online-schema-change 3.2.1 (Debian bookworm percona-toolkit 3.2.1-1)",
}


@lru_cache(maxsize=16)
def _digest(real_path: str, mtime: float, size: int) -> str:
    sha = hashlib.sha256()
    with open(real_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def cannot_checkpoint(pt_osc_path: str, extra_args: list[str] | tuple[str, ...] = ()) -> str | None:
    """Why this pt-osc cannot checkpoint (and so cannot resume), or None when it can."""
    found = shutil.which(pt_osc_path) or pt_osc_path
    try:
        real = os.path.realpath(found)
        info = os.stat(real)
        digest = _digest(real, info.st_mtime, info.st_size)
    except OSError as exc:
        return f"pt_osc_path {pt_osc_path!r} cannot be read ({exc})"
    if digest not in KNOWN_SCRIPTS:
        return (f"pt_osc_path {pt_osc_path!r} is not a pt-online-schema-change the checkpoint plugin knows "
                f"(sha256 {digest[:16]}...; known: {', '.join(KNOWN_SCRIPTS.values())})")
    if any(arg == "--plugin" or arg.startswith("--plugin=") for arg in extra_args):
        return "ptosc_extra_args sets a --plugin of its own (pt-osc takes one plugin)"
    return None


def plugin_args() -> list[str]:
    return [f"--plugin={PLUGIN}"]


def environment(checkpoint_path: Path, resume_path: Path | None) -> dict[str, str]:
    """The child's environment: where the plugin writes, and what it resumes from (if anything)."""
    env = dict(os.environ)
    env[ENV_CHECKPOINT] = str(checkpoint_path)
    env.pop(ENV_RESUME, None)
    if resume_path is not None:
        env[ENV_RESUME] = str(resume_path)
    return env


def read(path: Path) -> dict[str, Any] | None:
    """The latest checkpoint the plugin wrote, or None (not written yet, or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_resume(path: Path, checkpoint: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(checkpoint))
    os.replace(tmp, path)


def resumable(checkpoint: dict[str, Any] | None) -> bool:
    return bool(checkpoint and checkpoint.get("resumable") and checkpoint.get("upper"))


def percentage(checkpoint: dict[str, Any] | None) -> int:
    """The share of the table copied at the checkpoint (rows copied over pt-osc's row estimate)."""
    if not checkpoint:
        return 0
    rows, estimate = int(checkpoint.get("rows_copied") or 0), int(checkpoint.get("row_estimate") or 0)
    return min(99, int(rows * 100 / estimate)) if estimate > 0 else 0

"""Timestamped copy output to the task log, a local file, and the shift UI's log file.

The local file ``<log_dir>/id-<id>/ptosc-output.log`` is also the spool for the API:
a sidecar ``ptosc-output.log.shipped`` holds how many bytes shift already has, and a
sync sends the rest in bounded chunks, advancing the offset only after the API
accepted a chunk. So nothing is lost (a failed sync is retried, a killed worker's
tail is sent by the next run on the host), nothing is sent twice, and memory stays
flat however much pt-osc prints.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shift_provider import ptosc

LOG_FILE_NAME = "ptosc-output.log"
CHUNK_BYTES = 256 * 1024


def timestamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LogShipper:
    """Write lines once, ship them to the API every ``sync_interval`` seconds and at the end."""

    def __init__(self, path: Path, append: Callable[[str], Any], *, sync_interval: float,
                 task_log: logging.Logger | None = None, chunk_bytes: int = CHUNK_BYTES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.offset_path = self.path.with_name(self.path.name + ".shipped")
        self.append = append
        self.sync_interval = sync_interval
        self.task_log = task_log
        self.chunk_bytes = chunk_bytes
        self.clock = clock
        self._file = None
        self._last_sync = clock()
        self.shipped_bytes = 0  # this run only, for the log
        self.failed_syncs = 0

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> LogShipper:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        if not self.offset_path.exists():
            # A file without a sidecar was never shipped by us: start at its end, not at 0.
            self._write_offset(self._file.tell())
        return self

    def close(self) -> bool:
        """Flush, ship the rest (a few attempts), close. True when shift has everything."""
        shipped = False
        for attempt in range(3):
            if self.sync():
                shipped = True
                break
            time.sleep(0.5 * (attempt + 1))
        if self._file is not None:
            self._file.close()
            self._file = None
        return shipped

    def __enter__(self) -> LogShipper:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def write(self, stream: str, text: str) -> str:
        """One output line to the task log and the file, with exactly one timestamp each.

        The file (and shift's log) has no timestamps of its own: a line gets a UTC one and
        its stream, unless pt-osc stamped it itself, then it is written verbatim. The task
        log's every record is stamped by Airflow already: there the line goes without ours,
        and without pt-osc's stamp, with the stream it came on.
        """
        own_stamp, rest = ptosc.own_timestamp(text)
        line = text if own_stamp else f"{timestamp()} {stream}: {text}"
        if self.task_log is not None:
            if stream == "shift":
                self.task_log.info("%s", rest)
            else:
                self.task_log.info("pt-osc %s: %s", stream, rest)
        assert self._file is not None, "LogShipper.open() first"
        self._file.write(line.encode("utf-8", errors="replace") + b"\n")
        return line

    def note(self, text: str) -> str:
        """A line of ours (cleanup, stop, outcome), so the shift UI log says what the runner did and why."""
        return self.write("shift", text)

    # -- shipping --------------------------------------------------------------------------

    def maybe_sync(self) -> None:
        if self.clock() - self._last_sync >= self.sync_interval:
            self.sync()

    def sync(self) -> bool:
        """Send everything not yet shipped, in chunks cut at line ends. False if the API refused."""
        self._last_sync = self.clock()
        if self._file is None:
            return True
        self._file.flush()
        end = self._file.tell()
        offset = self._read_offset(end)
        try:
            with open(self.path, "rb") as reader:
                while offset < end:
                    reader.seek(offset)
                    chunk = reader.read(min(self.chunk_bytes, end - offset))
                    if offset + len(chunk) < end:
                        cut = chunk.rfind(b"\n")
                        if cut >= 0:
                            chunk = chunk[:cut + 1]
                    self.append(chunk.decode("utf-8", errors="replace"))
                    offset += len(chunk)
                    self.shipped_bytes += len(chunk)
                    self._write_offset(offset)
        except Exception as exc:  # the API is down: keep the offset, the next sync sends it
            self.failed_syncs += 1
            if self.task_log is not None:
                self.task_log.warning("could not ship pt-osc output to shift (will retry): %s", exc)
            return False
        return True

    def _read_offset(self, end: int) -> int:
        try:
            value = int(self.offset_path.read_text().strip() or 0)
        except (OSError, ValueError):
            value = end
        return min(max(value, 0), end)

    def _write_offset(self, offset: int) -> None:
        tmp = self.offset_path.with_name(self.offset_path.name + ".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self.offset_path)

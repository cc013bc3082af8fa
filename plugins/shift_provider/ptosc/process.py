"""pt-online-schema-change as a child process group whose output is streamed line by line.

Why a module of its own: the copy must never outlive the task that owns it, and its
output can be far larger than memory. So the child

* runs in its own session (``start_new_session=True``): stopping it is one
  ``os.killpg`` that also reaches anything it forked;
* gets a parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``): ``on_kill`` does
  not run when the task process is SIGKILLed, the kernel then kills pt-osc for us;
* is read by one thread per pipe into a bounded queue: when the consumer is slow the
  pipe fills and pt-osc waits, so memory stays flat whatever the output size.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1
# A line longer than this is delivered in pieces (pt-osc never prints such lines,
# but a runaway child must not make us buffer without bound).
MAX_LINE_BYTES = 64 * 1024
QUEUE_LINES = 2000


@dataclass(frozen=True)
class OutputLine:
    """One line of the child's output, without its newline."""

    stream: str  # "stdout" | "stderr"
    text: str


class _Eof:
    def __init__(self, stream: str) -> None:
        self.stream = stream


def _parent_death_signal(sig: int):
    """A preexec_fn arming PR_SET_PDEATHSIG; libc is loaded before the fork.

    The signal fires when the *thread* that forked exits, so start the child from the
    thread that lives as long as the task (the task's main thread).
    """
    parent = os.getpid()
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: on_kill and the stop paths still apply
        return None

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


class ChildProcess:
    """A child process group with streamed, line-split output (pt-osc, or any argv in tests)."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
                 queue_lines: int = QUEUE_LINES) -> None:
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_lines)
        self._readers: list[threading.Thread] = []
        self.stopped_by_us = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> ChildProcess:
        self.process = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=_parent_death_signal(signal.SIGKILL), close_fds=True,
            env=self.env, cwd=self.cwd,
        )
        for name, pipe in (("stdout", self.process.stdout), ("stderr", self.process.stderr)):
            reader = threading.Thread(target=self._read, args=(name, pipe), name=f"ptosc-{name}", daemon=True)
            reader.start()
            self._readers.append(reader)
        return self

    def _read(self, name: str, pipe) -> None:
        try:
            while True:
                raw = pipe.readline(MAX_LINE_BYTES)
                if not raw:
                    break
                self._queue.put(OutputLine(name, raw.rstrip(b"\r\n").decode("utf-8", errors="replace")))
        except (OSError, ValueError):
            pass
        finally:
            self._queue.put(_Eof(name))
            try:
                pipe.close()
            except OSError:
                pass

    def lines(self, tick: float = 0.2) -> Iterator[OutputLine | None]:
        """Output lines as they come; ``None`` every ``tick`` seconds of silence; ends at EOF on both pipes."""
        open_streams = 2
        while open_streams:
            try:
                item = self._queue.get(timeout=tick)
            except queue.Empty:
                yield None
                continue
            if isinstance(item, _Eof):
                open_streams -= 1
                continue
            yield item

    def wait(self, timeout: float | None = None) -> int:
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the child's whole process group; False when it is already gone."""
        if self.process is None:
            return False
        try:
            os.killpg(self.process.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def stop(self, grace: float = 5.0) -> None:
        """TERM the group, then KILL it if it is still there after ``grace`` seconds."""
        if self.process is None:
            return
        self.stopped_by_us = True
        self.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        # KILL whatever is left of the group, even when the leader is gone already.
        self.signal_group(signal.SIGKILL)

"""A statistical profiler for the benchmarks: where a process's CPU time goes, by Python function.

A CPU-time interval timer (ITIMER_PROF) interrupts the process every `interval_s`
of CPU it uses, in any thread, and the handler, which Python always runs in the
main thread, counts that thread's current stack. The relay's per-classroom work
(aiortc's senders, the fan-out, the pacer) all runs on the event loop in the main
thread, so its functions get their share of the samples; CPU used by other threads
(the encoders) lands on wherever the loop waits, `select.epoll.poll`'s caller.

Unlike cProfile it costs almost nothing between samples, so the process keeps up
with the load and the proportions are those of an unprofiled run.
"""

from __future__ import annotations

import signal
from collections import Counter
from types import FrameType


class StackSampler:
    def __init__(self, interval_s: float = 0.002) -> None:
        self._interval_s = interval_s
        self.samples = 0
        # A function as "file:line(name)" of its first line.
        self.own: Counter[str] = Counter()  # the innermost Python frame
        self.inclusive: Counter[str] = Counter()  # any frame of the stack, once per sample
        self.stacks: Counter[tuple[str, ...]] = Counter()  # whole stacks, innermost first

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self._interval_s, self._interval_s)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)

    def _sample(self, signum: int, frame: FrameType | None) -> None:
        self.samples += 1
        seen: set[str] = set()
        inner = True
        stack: list[str] = []
        while frame is not None:
            code = frame.f_code
            name = f"{code.co_filename}:{code.co_firstlineno}({code.co_name})"
            stack.append(name)
            if inner:
                self.own[name] += 1
                inner = False
            if name not in seen:
                seen.add(name)
                self.inclusive[name] += 1
            frame = frame.f_back
        self.stacks[tuple(stack)] += 1

    def report(self, min_share: float = 0.002) -> str:
        """Functions by their share of the samples, in their own code and with all they call."""
        lines = [f"{self.samples} samples every {self._interval_s * 1000:g} ms of CPU"]
        for title, counts in (("own", self.own), ("inclusive", self.inclusive)):
            lines.append(f"--- {title}")
            for name, n in counts.most_common():
                share = n / max(1, self.samples)
                if share < min_share:
                    break
                lines.append(f"{100 * share:5.1f}%  {_short(name)}")
        return "\n".join(lines) + "\n"

    def folded(self) -> str:
        """The samples as folded stacks, outermost frame first, one line per stack with its
        count: what flame-graph tools read, and what `grep`/`awk` can cut into subtrees."""
        return "".join(
            ";".join(_short(name) for name in reversed(stack)) + f" {n}\n"
            for stack, n in self.stacks.most_common()
        )


def _short(name: str) -> str:
    # site-packages/aiortc/rtp.py:727(serialize) reads better than the whole path.
    path, _, rest = name.partition(":")
    parts = path.split("/")
    return "/".join(parts[-2:]) + ":" + rest

"""What every benchmark reports: one :class:`Row` per figure, and the table they make.

A figure is always relative to something measured in the same run on the same machine
(these machines are noisy, so absolute seconds from another run mean little):

- ``speedup``: ``baseline_s / seconds``, how many times faster than the baseline
  (target: at least ``target``);
- ``overhead``: ``seconds / baseline_s``, how close to a limit no implementation can beat
  (target: at most ``target``);
- ``seconds``: a plain time with a ceiling (``import dsxsd``, make-pairs on 1M crops); the
  baseline, if any, is printed for scale.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Literal, Optional, TypeVar

T = TypeVar("T")

Kind = Literal["speedup", "overhead", "seconds"]


@dataclass(frozen=True)
class Row:
    stage: str  # "convert voc2csv", "crop", ...
    what: str  # what was timed: "dsxsd, --workers 2 (17,000 files)"
    seconds: float
    baseline: str  # what it is compared with: "ElementTree loop (xml_to_csv.py)"
    baseline_s: Optional[float]
    kind: Kind
    target: Optional[float]  # None: reported, no target

    @property
    def ratio(self) -> Optional[float]:
        if self.kind == "seconds" or not self.baseline_s:
            return None
        if self.kind == "speedup":
            return self.baseline_s / self.seconds
        return self.seconds / self.baseline_s

    @property
    def met(self) -> Optional[bool]:
        if self.target is None:
            return None
        if self.kind == "seconds":
            return self.seconds <= self.target
        ratio = self.ratio
        assert ratio is not None
        return ratio >= self.target if self.kind == "speedup" else ratio <= self.target

    def figure(self) -> str:
        if self.kind == "seconds":
            return f"{self.seconds:.3f} s"
        word = "faster" if self.kind == "speedup" else "of the limit"
        return f"{self.ratio:.2f}x {word}"

    def goal(self) -> str:
        if self.target is None:
            return "-"
        if self.kind == "seconds":
            return f"< {self.target:g} s"
        return f">= {self.target:g}x" if self.kind == "speedup" else f"<= {self.target:g}x"


def timed(function: Callable[..., T], *args, **kwargs) -> tuple[T, float]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def best_of(runs: int, function: Callable[..., T], *args, **kwargs) -> tuple[T, float]:
    """The fastest of ``runs`` calls: the least disturbed by other work on the machine."""
    results = [timed(function, *args, **kwargs) for _ in range(runs)]
    return min(results, key=lambda pair: pair[1])


def interleaved(runs: int, *calls: tuple, self_timed: bool = False) -> list[float]:
    """The best time of each call over ``runs`` rounds, the calls taking turns within a
    round: load from other work on the machine then falls on all of them alike. With
    ``self_timed``, each call returns the seconds it measured itself (see
    :func:`in_fresh_process`) and those are compared."""
    best = [float("inf")] * len(calls)
    for _ in range(runs):
        for index, (function, *args) in enumerate(calls):
            result, seconds = timed(function, *args)
            best[index] = min(best[index], result if self_timed else seconds)
    return best


def in_fresh_process(*argv: str) -> float:
    """Run ``python argv...`` and return the seconds it printed on its last line: a run as
    a user's script runs, in a new interpreter whose state (threads, imports, start
    method of worker processes) no earlier benchmark changed, timed by itself so that
    starting Python is left out."""
    return float(last_line_in_fresh_process(*argv).split()[-1])


def last_line_in_fresh_process(*argv: str) -> str:
    """The last line ``python argv...`` printed; RuntimeError with its stderr if it failed."""
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr.strip()}")
    return done.stdout.splitlines()[-1]


def cores() -> int:
    from dsxsd._parallel import available_cores

    return available_cores()


def table(rows: list[Row], markdown: bool = False) -> str:
    header = ("stage", "measured", "time s", "against", "base s", "figure", "target", "met")
    lines = [
        (
            row.stage,
            row.what,
            f"{row.seconds:.3f}",
            row.baseline,
            "-" if row.baseline_s is None else f"{row.baseline_s:.3f}",
            row.figure(),
            row.goal(),
            {True: "yes", False: "NO", None: "-"}[row.met],
        )
        for row in rows
    ]
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)

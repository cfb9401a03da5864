"""Summarise py-spy collapsed stacks (``run.py --profile DIR`` writes them).

    python bench/profile_summary.py DIR/FILE.txt [--top 25]

Prints the functions with the most samples of their own (self) and the
most samples under them (inclusive), line numbers folded away.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

LINE = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    """``handler (pointsman/api/queries.py:123)`` -> without the line."""
    frame = LINE.sub(")", frame.strip())
    return frame.replace(str(Path.cwd()) + "/", "").replace(".venv/lib/", "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in args.path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = stack.split(";")
        frames = [frame_name(f) for f in frames if "(" in f and ".py" in f]
        total += samples
        worker = any(f.startswith("Thread._bootstrap ") for f in frames)
        threads["worker threads" if worker else "event loop"] += samples
        if frames:
            own[frames[-1]] += samples
        for name in set(frames):
            under[name] += samples
    print(f"{total} samples; " + ", ".join(f"{k} {v}" for k, v in threads.items()))
    for title, counter in (("self", own), ("inclusive", under)):
        print(f"\n{title}:")
        for name, samples in counter.most_common(args.top):
            print(f"  {samples / total:6.1%}  {name}")


if __name__ == "__main__":
    main()

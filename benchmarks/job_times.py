"""Per-rule job times of finished Snakemake runs, from their console logs (and the jobs' own logs).

    snakemake --cores all 2> run.log            # any run; the console log is what Snakemake prints
    python benchmarks/job_times.py run.log      # one run: jobs, seconds, start-up per rule
    python benchmarks/job_times.py before.log after.log --workdir /path/of/after   # side by side

A job's seconds run from the time stamp before its `rule`/`localrule` block to the one before its
`Finished jobid` line (whole seconds: Snakemake's resolution). Its start-up is read from the last line of
the job's own log (`job time: ... s of it before the stage's first log line`: interpreter, Snakemake's
preamble, imports, reading inputs and models), written by every stage since w2s_align.logs has it;
runs from before that show '-'. Logs are found relative to `--workdir` (default: the current folder);
with two console logs, start-up is read for the second.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")  # may follow a progress bar
RULE = re.compile(r"^(?:local)?rule (\w+):$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")
JOB_TIME = re.compile(r"job time: ([\d.]+) s in all, ([\d.]+) s of it before")


def jobs(console_log: Path) -> list[dict]:
    """One dict per finished job: rule, jobid, seconds, log (the job's log file, if it has one)."""
    stamp, current, started, rows = None, None, {}, []
    for line in console_log.read_text(errors="replace").splitlines():
        if m := STAMP.search(line):
            stamp = datetime.strptime(" ".join(m[1].split()), "%a %b %d %H:%M:%S %Y")
        elif m := RULE.match(line):
            current = {"rule": m[1], "start": stamp, "log": None}
        elif current is not None and line.startswith("    log: "):
            current["log"] = line.split(": ", 1)[1].split(", ")[0]
        elif current is not None and line.startswith("    jobid: "):
            started[int(line.split(": ", 1)[1])] = current
            current = None
        elif m := FINISHED.match(line):
            job = started.pop(int(m[1]), None)
            if job and job["start"] and stamp:
                rows.append(job | {"jobid": int(m[1]), "seconds": (stamp - job["start"]).total_seconds()})
    return rows


def start_up(job: dict, workdir: Path) -> float | None:
    path = workdir / job["log"] if job["log"] else None
    if path is None or not path.exists():
        return None
    matches = JOB_TIME.findall(path.read_text(errors="replace"))
    return float(matches[-1][1]) if matches else None


def per_rule(console_log: Path, workdir: Path | None) -> dict[str, dict]:
    table: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "seconds": 0.0, "start_up": None})
    for job in jobs(console_log):
        row = table[job["rule"]]
        row["jobs"] += 1
        row["seconds"] += job["seconds"]
        if workdir is not None and (s := start_up(job, workdir)) is not None:
            row["start_up"] = (row["start_up"] or 0.0) + s
    return dict(table)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("logs", nargs="+", type=Path, help="console log(s): one run, or before and after")
    ap.add_argument("--workdir", type=Path, default=Path("."), help="where the (last) run's logs/ are")
    args = ap.parse_args(argv)
    tables = [
        per_rule(log, args.workdir if i == len(args.logs) - 1 else None) for i, log in enumerate(args.logs)
    ]
    rules = sorted(
        {r for t in tables for r in t}, key=lambda r: -max(t.get(r, {}).get("seconds", 0) for t in tables)
    )
    if len(tables) == 1:
        print("| rule | jobs | seconds | start-up s |\n|---|---|---|---|")
        for r in rules:
            row = tables[0][r]
            print(f"| {r} | {row['jobs']} | {row['seconds']:.0f} | {fmt(row['start_up'])} |")
        total = sum(row["seconds"] for row in tables[0].values())
        print(f"| all | {sum(row['jobs'] for row in tables[0].values())} | {total:.0f} | |")
        return
    before, after = tables[0], tables[-1]
    print(
        "| rule | jobs | before s | after s | after / before | after: start-up s |\n|---|---|---|---|---|---|"
    )
    empty = {"jobs": 0, "seconds": 0.0, "start_up": None}
    for r in rules:
        b, a = before.get(r, empty), after.get(r, empty)
        ratio = f"{a['seconds'] / b['seconds']:.2f}" if b["seconds"] else "-"
        jobs_ = str(a["jobs"]) if a["jobs"] == b["jobs"] else f"{b['jobs']} -> {a['jobs']}"
        print(f"| {r} | {jobs_} | {b['seconds']:.0f} | {a['seconds']:.0f} | {ratio} | {fmt(a['start_up'])} |")
    tb, ta = (sum(row["seconds"] for row in t.values()) for t in (before, after))
    print(f"| all (sum of jobs) | | {tb:.0f} | {ta:.0f} | {ta / tb:.2f} | |")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Stop the daemons started by start_slurm.sh STATE_DIR, by the pids it recorded (never by name).
set -uo pipefail
state=$(realpath -m "${1:?usage: stop_slurm.sh STATE_DIR}")
pids=()
for name in slurmctld slurmd; do
    [[ -s $state/run/$name.pid ]] && pids+=("$(cat "$state/run/$name.pid")")
done
# ask our slurmctld to stop itself and slurmd; never a controller this script did not start
ctld=$state/run/slurmctld.pid
[[ -s $ctld ]] && kill -0 "$(cat "$ctld")" 2>/dev/null && timeout 10 scontrol shutdown >/dev/null 2>&1
for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" && sleep 2
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
done
# munged only if this script's start_slurm.sh started it
if [[ -s $state/run/munged.pid ]]; then
    pid=$(cat "$state/run/munged.pid")
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
# the configuration start_slurm.sh wrote for this STATE_DIR (its first line says so)
for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
    [[ -f $f && $(head -1 "$f") == "# written by w2s-align tests/slurm/start_slurm.sh; state in $state" ]] && rm -f "$f"
done
exit 0

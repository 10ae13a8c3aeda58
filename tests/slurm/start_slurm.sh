#!/usr/bin/env bash
# Start a real one-node SLURM cluster on this Debian machine, without systemd, for the SLURM test.
#   tests/slurm/start_slurm.sh STATE_DIR     (as root; installs the Debian packages if missing)
# Partitions: cpu (default) and gpu. The node declares 4 CPUs and two fake GPUs (gres backed by
# /dev/null and /dev/zero) whatever the hardware, so that two 2-CPU jobs run at once.
# Job completion records go to STATE_DIR/log/jobcomp.log (jobcomp/filetxt, no database).
# Stop with tests/slurm/stop_slurm.sh STATE_DIR (by the pids recorded in STATE_DIR/run).
# Exit status 3: this machine cannot host the test cluster (message on stderr).
set -euo pipefail
state=$(realpath -m "${1:?usage: start_slurm.sh STATE_DIR}")
conf=/etc/slurm/slurm.conf
marker="# written by w2s-align tests/slurm/start_slurm.sh"
cant() { echo "start_slurm.sh: $*" >&2; exit 3; }

[[ $(id -u) == 0 ]] || cant "needs root"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || cant "SLURM is not installed and there is no apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || cant "apt-get update failed"
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
        || cant "apt-get install slurmctld slurmd slurm-client munge failed"
fi
# Never overwrite a real cluster's configuration or run next to its daemons.
if [[ -e $conf ]] && ! grep -qF "$marker" "$conf"; then cant "$conf exists and was not written by this script"; fi
if (exec 3<>/dev/tcp/127.0.0.1/6817) 2>/dev/null; then cant "port 6817 is in use (a slurmctld is running)"; fi

host=$(hostname -s)
mkdir -p "$state"/{run,log,spool/slurmd,spool/slurmctld}
mem=$(( $(awk '/MemAvailable/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
(( mem > 4000 )) && mem=4000   # a scheduling number only (task/none enforces nothing)
cat > "$conf" <<CONF
$marker; state in $state
ClusterName=w2stest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$state/log/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
ReturnToService=2
MinJobAge=3600
MailProg=/bin/true
GresTypes=gpu
SlurmctldPidFile=$state/run/slurmctld.pid
SlurmdPidFile=$state/run/slurmd.pid
SlurmdSpoolDir=$state/spool/slurmd
StateSaveLocation=$state/spool/slurmctld
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=4 Boards=1 SocketsPerBoard=1 CoresPerSocket=4 ThreadsPerCore=1 RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
CONF
printf '%s\nAutoDetect=off\nNodeName=%s Name=gpu File=/dev/null\nNodeName=%s Name=gpu File=/dev/zero\n' \
    "$marker; state in $state" "$host" "$host" > /etc/slurm/gres.conf

# munge (Debian's postinst created /etc/munge/munge.key); reuse a running munged
if ! munge -n >/dev/null 2>&1; then
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
    cp /run/munge/munged.pid "$state/run/munged.pid"
fi
munge -n >/dev/null || cant "munged did not start"

alive() { [[ -s $state/run/$1.pid ]] && kill -0 "$(cat "$state/run/$1.pid")" 2>/dev/null; }
slurmctld
slurmd -N "$host"
st=
for _ in $(seq 100); do
    alive slurmctld && alive slurmd || { sleep 0.2; alive slurmctld && alive slurmd; } || break
    st=$(timeout 5 sinfo -h -N -o %T 2>/dev/null | head -1 || true)
    [[ $st == idle ]] && break
    [[ $st == drain* ]] && timeout 5 scontrol update NodeName="$host" State=RESUME
    sleep 0.2
done
if [[ $st != idle ]]; then
    echo "start_slurm.sh: node state '$st'; daemon logs:" >&2
    tail -5 "$state/log/slurmctld.log" "$state/log/slurmd.log" >&2
    exit 1
fi
echo "SLURM up: node $host idle; partitions $(sinfo -h -o %P | tr '\n' ' ')"

#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for trying the sbatch recipes for real:
#   deploy/slurm/local-cluster.sh start     # installs Debian's slurm and munge if missing, starts
#                                           # munged, slurmctld and slurmd; prints the SLURM_CONF
#   export SLURM_CONF=$STATE/slurm.conf     # (as printed) then sinfo, sbatch, squeue, scancel
#   deploy/slurm/local-cluster.sh stop      # stops every process it started
#   deploy/slurm/local-cluster.sh status
# Everything it writes lives in its state folder, ${ORCH_SLURM_STATE:-/tmp/orch-slurm-$UID}
# (configuration, munge key and socket, spool, logs, pid files); the daemons listen on 127.0.0.1
# ports chosen free at start. Safe to run twice: start on a running cluster says so, stop on a
# stopped one does nothing. Needs root (slurmd runs jobs as their users) and apt for the install.
set -euo pipefail

STATE=${ORCH_SLURM_STATE:-/tmp/orch-slurm-$(id -u)}
CONF=$STATE/slurm.conf
NODE=$(hostname -s)

say() { printf 'local-cluster: %s\n' "$*" >&2; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null && return 0
    command -v apt-get >/dev/null || { say "no slurmctld/slurmd/munged and no apt-get to install them"; exit 3; }
    say "installing Debian's slurmctld, slurmd, slurm-client and munge"
    # the packages' own services are not started (no init here; policy-rc.d refuses, or we stop them)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >"$STATE/apt.log" 2>&1 \
        || { apt-get update -qq >>"$STATE/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             --no-install-recommends slurmctld slurmd slurm-client munge >>"$STATE/apt.log" 2>&1; } \
        || { say "apt-get install failed: see $STATE/apt.log"; exit 3; }
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_conf() {
    local cpus memory_mb
    cpus=$(getconf _NPROCESSORS_ONLN)  # not nproc: it follows OMP_NUM_THREADS
    memory_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
    cat >"$CONF" <<EOF
# written by deploy/slurm/local-cluster.sh: one node, this machine, loopback only
ClusterName=orchlocal
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket.2
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ReturnToService=2
KillWait=10
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    mkdir -p "$STATE"
    chmod 700 "$STATE"
    if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid"; then
        say "already running"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    stop quiet
    install_packages
    mkdir -p "$STATE/munge" "$STATE/ctld" "$STATE/spool"
    chmod 700 "$STATE/munge"
    [ -s "$STATE/munge.key" ] || (umask 077 && head -c 1024 /dev/urandom >"$STATE/munge.key")
    munged --force --key-file="$STATE/munge.key" --socket="$STATE/munge/munge.socket.2" \
        --pid-file="$STATE/munged.pid" --log-file="$STATE/munged.log" --seed-file="$STATE/munge.seed" \
        || { say "munged did not start: see $STATE/munged.log"; exit 3; }
    write_conf
    export SLURM_CONF=$CONF
    slurmctld -f "$CONF" || { say "slurmctld did not start: see $STATE/slurmctld.log"; stop quiet; exit 3; }
    slurmd -f "$CONF" -N "$NODE" || { say "slurmd did not start: see $STATE/slurmd.log"; stop quiet; exit 3; }
    for _ in $(seq 60); do
        if sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            say "up: $(sinfo -h -N -o '%N %T %c CPUs' 2>/dev/null)"
            echo "export SLURM_CONF=$CONF"
            return 0
        fi
        sleep 1
    done
    say "the node did not come up idle: see $STATE/slurmctld.log and $STATE/slurmd.log"
    stop quiet
    exit 3
}

stop() {
    local pidfile pid
    if [ -f "$CONF" ]; then  # cancel what still runs, so job steps end with their allocation
        SLURM_CONF=$CONF timeout 10 scancel --full --user="$(id -un)" 2>/dev/null || true
    fi
    for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/munged.pid"; do
        if alive "$pidfile"; then
            pid=$(cat "$pidfile")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
    # job steps slurmd started (slurmstepd) outlive it when it is killed: end them too
    pkill -f "slurmstepd: \[" 2>/dev/null || true
    [ "${1:-}" = quiet ] || say "stopped"
}

status() {
    if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid"; then
        SLURM_CONF=$CONF sinfo -N
    else
        say "not running"
        return 3
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

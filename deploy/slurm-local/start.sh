#!/usr/bin/env bash
# Start a single-node SLURM on this machine (slurmctld + slurmd on localhost, munge auth).
#
# For tests and trying sxtdist's SLURM path on a laptop or CI runner: one node, one
# partition "debug", the node's real CPU count and memory (from `slurmd -C`).
# Idempotent: running it again with everything up only checks that the node is idle.
#
#   deploy/slurm-local/start.sh          # install if missing, configure, start, wait for idle
#   deploy/slurm-local/stop.sh           # stop the daemons this script started
#
# Needs root (slurmd launches jobs as their users; apt installs packages). Debian/Ubuntu:
# installs slurm-wlm and munge with apt-get when they are missing (set
# SXTDIST_SLURM_NO_INSTALL=1 to forbid that). State and logs live in $SXTDIST_SLURM_STATE
# (default /tmp/sxtdist-slurm). The config goes to /etc/slurm/slurm.conf, the path every
# SLURM client reads by default; an existing slurm.conf that this script did not write is
# never touched (the script stops with a message instead).
set -euo pipefail

STATE=${SXTDIST_SLURM_STATE:-/tmp/sxtdist-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by sxtdist deploy/slurm-local/start.sh"
TIMEOUT=${SXTDIST_SLURM_TIMEOUT:-60}

fail() { echo "slurm-local: $*" >&2; exit 1; }
say() { echo "slurm-local: $*" >&2; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (slurmd runs jobs as their users); try: sudo $0"

# --- packages -------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
  ! command -v sinfo >/dev/null || ! command -v munged >/dev/null; then
  [ "${SXTDIST_SLURM_NO_INSTALL:-0}" = 1 ] && fail "slurm-wlm/munge not installed and SXTDIST_SLURM_NO_INSTALL=1"
  command -v apt-get >/dev/null || fail "slurm-wlm/munge not installed and no apt-get here; install SLURM and munge yourself"
  say "installing slurm-wlm and munge with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends slurm-wlm munge >"$STATE.apt.log" 2>&1 ||
    { apt-get update >>"$STATE.apt.log" 2>&1 &&
      apt-get install -y --no-install-recommends slurm-wlm munge >>"$STATE.apt.log" 2>&1; } ||
    fail "apt-get install slurm-wlm munge failed; see $STATE.apt.log"
fi

mkdir -p "$STATE"/{spool/ctld,spool/d,log}
chmod 755 "$STATE"

# --- munge ----------------------------------------------------------------------------
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
    else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; fi
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  say "starting munged"
  if id munge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged || fail "munged did not start; see /var/log/munge/munged.log"
  else
    /usr/sbin/munged --force || fail "munged did not start; see /var/log/munge/munged.log"
  fi
  touch "$STATE/started-munged"
  for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
  munge -n | unmunge >/dev/null 2>&1 || fail "munge does not work (munge -n | unmunge fails); see /var/log/munge/munged.log"
fi

# --- slurm.conf -----------------------------------------------------------------------
HOST=$(hostname -s)
NODE_LINE=$(slurmd -C | head -1) || fail "slurmd -C failed: cannot read this machine's CPUs and memory"
# slurmd -C prints "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  fail "$CONF exists and was not written by this script; not touching it (move it away or use that SLURM)"
fi
NEW=$(mktemp)
cat >"$NEW" <<CONF
$MARK
# A single-node SLURM for testing sxtdist; see deploy/slurm-local/start.sh.
ClusterName=sxtdist-local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No cgroups: this must work inside containers and VMs without systemd.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=60
KillWait=10
Waittime=0
$NODE_LINE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p /etc/slurm
RECONF=0
if ! cmp -s "$NEW" "$CONF" 2>/dev/null; then
  say "writing $CONF ($NODE_LINE)"
  cp "$NEW" "$CONF"; chmod 644 "$CONF"; RECONF=1
fi
rm -f "$NEW"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- daemons --------------------------------------------------------------------------
if alive "$STATE/slurmctld.pid"; then
  [ "$RECONF" = 1 ] && { say "config changed: restarting slurmctld"; kill "$(cat "$STATE/slurmctld.pid")"; sleep 2; }
fi
if ! alive "$STATE/slurmctld.pid"; then
  say "starting slurmctld (log $STATE/log/slurmctld.log)"
  slurmctld || fail "slurmctld did not start; see $STATE/log/slurmctld.log"
fi
if alive "$STATE/slurmd.pid"; then
  [ "$RECONF" = 1 ] && { say "config changed: restarting slurmd"; kill "$(cat "$STATE/slurmd.pid")"; sleep 2; }
fi
if ! alive "$STATE/slurmd.pid"; then
  say "starting slurmd (log $STATE/log/slurmd.log)"
  slurmd || fail "slurmd did not start; see $STATE/log/slurmd.log"
fi

# --- wait for the node ----------------------------------------------------------------
state=""
for i in $(seq "$TIMEOUT"); do
  state=$(sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -1 || true)
  case "$state" in
    idle|mix|alloc) say "node $HOST is $state; SLURM is up (sinfo, srun, sbatch work)"; exit 0 ;;
    down*|drain*|drng*|fail*)
      # A node from an earlier run (or a config change) comes back as down/drained: resume it.
      scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
echo "slurm-local: node $HOST did not become idle within ${TIMEOUT}s (state: '${state:-no answer from slurmctld}')" >&2
sinfo -N -l >&2 2>&1 || true
scontrol show node "$HOST" 2>/dev/null | grep -i reason >&2 || true
echo "--- last lines of $STATE/log/slurmctld.log" >&2; tail -n 15 "$STATE/log/slurmctld.log" >&2 2>/dev/null || true
echo "--- last lines of $STATE/log/slurmd.log" >&2; tail -n 15 "$STATE/log/slurmd.log" >&2 2>/dev/null || true
exit 1

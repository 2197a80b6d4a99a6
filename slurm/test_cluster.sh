#!/usr/bin/env bash
# A real single-node Slurm cluster for dars' tests (Debian 12 / bookworm, run as root, no systemd needed).
#
#   bash slurm/test_cluster.sh start    # install what is missing, start munged, mariadbd, slurmdbd, slurmctld, slurmd
#   bash slurm/test_cluster.sh status   # one line per daemon (up / DOWN) and sinfo
#   bash slurm/test_cluster.sh stop     # cancel jobs, then stop only the daemons this script started
#
# Environment:
#   DARS_SLURM_DIR   state, logs and pid files (default /tmp/dars-slurm); one cluster per machine,
#                    since /etc/slurm/slurm.conf and the ports 6817-6819/3306 are machine-wide
#   DARS_SLURM_ACCT  1 (default): MariaDB + slurmdbd so that `sacct` works (submitit polls job states with
#                    sacct; without it states read UNKNOWN and a cancelled job's result never returns)
#                    0: no accounting (faster, smaller install)
#
# `start` is idempotent (a daemon whose pid file points at a live process is left alone) and works
# from a purged system: apt installs the packages that are missing. `stop` kills only the pids from
# this script's own pid files (SIGTERM, SIGKILL after 15 s), in reverse start order.
set -euo pipefail
D=${DARS_SLURM_DIR:-/tmp/dars-slurm}
ACCT=${DARS_SLURM_ACCT:-1}
NODE=$(hostname -s)
RUN=$D/run
CLUSTER=dars

log() { echo "[test_cluster] $*" >&2; }

wait_for() {  # wait_for <seconds> <command...>
  local n=$(( $1 * 4 )); shift
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  log "timeout waiting for: $*"; return 1
}

alive() {  # alive <pidfile>: the pid in it is a live, non-zombie process
  local f=$1 pid st
  pid=$(cat "$f" 2>/dev/null) || return 1   # a daemon may remove its pid file as it exits
  [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)
  [ "$st" != Z ]
}

stop_pidfile() {  # stop_pidfile <file>
  local f=$1 pid
  pid=$(cat "$f" 2>/dev/null) || return 0
  if alive "$f"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do alive "$f" || break; sleep 0.25; done
    alive "$f" && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

install_packages() {
  local pkgs="slurmctld slurmd slurm-client munge"
  [ "$ACCT" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
  # shellcheck disable=SC2086
  if ! dpkg -s $pkgs >/dev/null 2>&1; then
    command -v apt-get >/dev/null || { log "apt-get not found: install $pkgs by hand"; exit 3; }
    log "installing $pkgs"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  fi
}

write_if_changed() {  # write_if_changed <path> (content on stdin); prints "changed" if it was rewritten
  local tmp; tmp=$(mktemp)
  cat > "$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; chmod 644 "$1"; echo changed; fi
}

slurm_conf() {
  local acct="AccountingStorageType=accounting_storage/none"
  [ "$ACCT" = 1 ] && acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
  cat <<CONF
# written by dars slurm/test_cluster.sh (state in ${D})
ClusterName=${CLUSTER}
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=${D}/state
SlurmdSpoolDir=${D}/spool
SlurmctldPidFile=${RUN}/slurmctld.pid
SlurmdPidFile=${RUN}/slurmd.pid
SlurmctldLogFile=${D}/log/slurmctld.log
SlurmdLogFile=${D}/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# no cgroups: plain process tracking works in containers and sandboxes
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
${acct}
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
# requeued jobs may start again at once (default 60 s delay only between begin times of batch requeues)
JobRequeue=1
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 512 )) State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  [ "$(id -u)" = 0 ] || { log "must run as root"; exit 3; }
  install_packages
  mkdir -p "$D"/{state,spool,log,run}
  chown slurm:slurm "$D"/state
  chmod 1777 "$D"/log "$RUN"   # written by root, slurm, munge and mysql daemons

  # --- munge (authentication)
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 755 /run/munge
  if ! alive "$RUN/munged.pid"; then
    runuser -u munge -- /usr/sbin/munged --pid-file="$RUN/munged.pid" --force
  fi
  wait_for 10 sh -c 'munge -n | unmunge'

  # --- slurm.conf, where every client looks by default
  local changed; changed=$(slurm_conf | write_if_changed /etc/slurm/slurm.conf)

  # --- accounting: MariaDB in the state dir, then slurmdbd
  if [ "$ACCT" = 1 ]; then
    install -d -o mysql -g mysql "$D/mysql" /run/mysqld
    if [ ! -d "$D/mysql/mysql" ]; then
      mariadb-install-db --user=mysql --datadir="$D/mysql" --auth-root-authentication-method=socket \
        --skip-test-db > "$D/log/mariadb-install.log" 2>&1
    fi
    if ! alive "$RUN/mariadbd.pid"; then
      /usr/sbin/mariadbd --user=mysql --datadir="$D/mysql" --socket=/run/mysqld/mysqld.sock \
        --pid-file="$RUN/mariadbd.pid" --bind-address=127.0.0.1 --port=3306 \
        --innodb-buffer-pool-size=64M --log-error="$D/log/mariadb.log" \
        </dev/null >>"$D/log/mariadb.stdout" 2>&1 &
      wait_for 60 mariadb -uroot -e 'select 1'
    fi
    mariadb -uroot -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
      CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
      GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
    cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=slurm
LogFile=${D}/log/slurmdbd.log
PidFile=${RUN}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
    chown slurm:slurm /etc/slurm/slurmdbd.conf; chmod 600 /etc/slurm/slurmdbd.conf
    alive "$RUN/slurmdbd.pid" || /usr/sbin/slurmdbd
    wait_for 60 sacctmgr -n list cluster
    sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi

  # --- controller and node daemon (both daemonize and write their own pid files)
  if [ -n "$changed" ]; then  # a changed slurm.conf needs both daemons restarted
    stop_pidfile "$RUN/slurmd.pid"; stop_pidfile "$RUN/slurmctld.pid"
  fi
  alive "$RUN/slurmctld.pid" || /usr/sbin/slurmctld
  wait_for 30 scontrol ping
  alive "$RUN/slurmd.pid" || /usr/sbin/slurmd
  wait_for 60 sh -c 'sinfo -h -o %T | grep -Eqx "idle|mixed|allocated"'
  sinfo
}

stop() {
  # jobs first, then the daemons in reverse start order (only the pids this script recorded)
  if alive "$RUN/slurmctld.pid" && command -v scancel >/dev/null; then
    scancel --full --user=root >/dev/null 2>&1 || true
  fi
  stop_pidfile "$RUN/slurmd.pid"
  stop_pidfile "$RUN/slurmctld.pid"
  stop_pidfile "$RUN/slurmdbd.pid"
  stop_pidfile "$RUN/mariadbd.pid"
  stop_pidfile "$RUN/munged.pid"
  log "stopped (state kept in $D)"
}

status() {
  local rc=0 f name
  for name in munged mariadbd slurmdbd slurmctld slurmd; do
    f=$RUN/$name.pid
    { [ "$name" = mariadbd ] || [ "$name" = slurmdbd ]; } && [ "$ACCT" != 1 ] && continue
    if alive "$f"; then printf '%-10s up   pid %s\n' "$name" "$(cat "$f" 2>/dev/null)"
    else printf '%-10s DOWN\n' "$name"; rc=1; fi
  done
  sinfo 2>&1 || rc=1
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status   (state in \$DARS_SLURM_DIR, default /tmp/dars-slurm)" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Multi-node Ray on Slurm, for backends that drive Ray (a later verl backend). One copy runs per node:
#
#   #SBATCH --nodes=2 --ntasks-per-node=1 --gpus-per-node=8 --cpus-per-task=64
#   export HF_HOME=... WANDB_MODE=offline NCCL_SOCKET_IFNAME=ib0   # BEFORE ray start: workers inherit it
#   srun --nodes=$SLURM_NNODES --ntasks-per-node=1 --wait=60 \
#       bash slurm/ray_cluster.sh -- python -m dars.run backend=verl trainer.nnodes=$SLURM_NNODES ...
#
# Rank 0 (the first host of the allocation) starts the Ray head, waits until all nodes have joined,
# runs the driver command with RAY_ADDRESS set, stops Ray and exits with the driver's status.
# Other ranks join with `ray start --address=HEAD:PORT --block` and exit once the head is gone
# (srun --wait=60 ends any straggler after rank 0 has finished).
#
# Pitfalls handled (docs: verl multinode / Ray-on-Slurm):
#   * a fixed --num-cpus / --num-gpus per node (from SLURM_CPUS_PER_TASK / SLURM_GPUS_ON_NODE), never autodetect
#   * environment is exported before `ray start` (Ray workers inherit the raylet's environment)
#   * node-local temp dir (RAY_TMPDIR, default /tmp/ray-$SLURM_JOB_ID): a session dir on a shared FS breaks sockets
#   * node list built with mapfile (one host per element), head IP from the head's own view
#   * waits for exactly SLURM_NNODES alive nodes (polling, not sleep) before the driver starts
#
# Environment (all optional):
#   RAY_PORT (6379)  RAY_TMPDIR  RAY_NUM_CPUS  RAY_NUM_GPUS  RAY_HEAD_IP (skip lookup)
#   RAY_JOIN_TIMEOUT (300 s)  RAY_NET_IFACE (take the head IP from this interface, e.g. ib0)
#   RAY_CLUSTER_DRY_RUN=1: print the commands this rank would run instead of running them (testable anywhere)
set -euo pipefail

[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { echo "usage: srun ... $0 -- DRIVER COMMAND..." >&2; exit 2; }

DRY=${RAY_CLUSTER_DRY_RUN:-0}
PORT=${RAY_PORT:-6379}
NNODES=${SLURM_NNODES:-${SLURM_JOB_NUM_NODES:-1}}
RANK=${SLURM_NODEID:-${SLURM_PROCID:-0}}
JOB=${SLURM_JOB_ID:-$$}
TMP=${RAY_TMPDIR:-/tmp/ray-$JOB}
NUM_CPUS=${RAY_NUM_CPUS:-${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}}
NUM_GPUS=${RAY_NUM_GPUS:-${SLURM_GPUS_ON_NODE:-0}}
TIMEOUT=${RAY_JOIN_TIMEOUT:-300}

run() {  # run CMD...: execute, or print under dry run
  if [ "$DRY" = 1 ]; then printf '+'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}

# --- hosts of the allocation, one per array element
if [ -n "${SLURM_JOB_NODELIST:-}" ] && command -v scontrol >/dev/null; then
  mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
elif [ -n "${SLURM_JOB_NODELIST:-}" ]; then
  mapfile -t NODES < <(tr ',' '\n' <<<"$SLURM_JOB_NODELIST")
else
  NODES=("$(hostname -s)")
fi
HEAD=${NODES[0]}
[ "${#NODES[@]}" -ge "$NNODES" ] || { echo "ray_cluster: $NNODES nodes expected, node list has ${#NODES[@]}" >&2; exit 2; }

head_ip() {
  if [ -n "${RAY_HEAD_IP:-}" ]; then echo "$RAY_HEAD_IP"
  elif [ "$RANK" = 0 ] && [ -n "${RAY_NET_IFACE:-}" ]; then
    ip -4 -o addr show "$RAY_NET_IFACE" | awk '{split($4, a, "/"); print a[1]; exit}'
  elif [ "$RANK" = 0 ]; then hostname --ip-address | awk '{print $1}'
  else getent hosts "$HEAD" | awk '{print $1; exit}'
  fi
}
IP=$(head_ip)
[ -n "$IP" ] || { echo "ray_cluster: cannot resolve the head node $HEAD (set RAY_HEAD_IP)" >&2; exit 2; }
export RAY_ADDRESS="$IP:$PORT"
echo "ray_cluster: rank $RANK/$NNODES on $(hostname -s), head $HEAD ($RAY_ADDRESS), cpus $NUM_CPUS gpus $NUM_GPUS, tmp $TMP" >&2

alive_nodes() {
  python - <<'PY' 2>/dev/null
import ray
ray.init(address="auto", logging_level="ERROR")
print(sum(1 for n in ray.nodes() if n.get("Alive")))
PY
}

if [ "$RANK" = 0 ]; then
  run mkdir -p "$TMP"
  run ray start --head --node-ip-address="$IP" --port="$PORT" --num-cpus="$NUM_CPUS" --num-gpus="$NUM_GPUS" \
      --temp-dir="$TMP" --disable-usage-stats
  if [ "$DRY" = 1 ]; then
    echo "+ wait until $NNODES nodes are alive (timeout ${TIMEOUT}s)"
  else
    trap 'ray stop --force >/dev/null 2>&1 || true' EXIT
    deadline=$(( $(date +%s) + TIMEOUT ))
    until [ "$(alive_nodes || echo 0)" -ge "$NNODES" ]; do
      [ "$(date +%s)" -lt "$deadline" ] || { echo "ray_cluster: only $(alive_nodes || echo 0)/$NNODES nodes joined in ${TIMEOUT}s" >&2; exit 1; }
      sleep 5
    done
  fi
  rc=0
  run env RAY_ADDRESS="$RAY_ADDRESS" "$@" || rc=$?
  run ray stop
  exit $rc
else
  # wait for the head's GCS port, then join and block until the head goes away
  if [ "$DRY" = 1 ]; then
    echo "+ wait until $IP:$PORT accepts connections (timeout ${TIMEOUT}s)"
  else
    deadline=$(( $(date +%s) + TIMEOUT ))
    until (exec 3<>"/dev/tcp/$IP/$PORT") 2>/dev/null; do
      [ "$(date +%s)" -lt "$deadline" ] || { echo "ray_cluster: head $RAY_ADDRESS unreachable" >&2; exit 1; }
      sleep 2
    done
  fi
  run mkdir -p "$TMP"
  run ray start --address="$RAY_ADDRESS" --num-cpus="$NUM_CPUS" --num-gpus="$NUM_GPUS" --temp-dir="$TMP" \
      --disable-usage-stats --block || true   # ends when the head stops: not an error
  exit 0
fi

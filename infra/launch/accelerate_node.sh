#!/usr/bin/env bash
# Starts `chorus train` on ONE node of a (possibly multi-node) job: one `accelerate launch` per node,
# which starts one training process per GPU of that node. Every node runs this same script; only
# MACHINE_RANK differs. Slurm (infra/slurm/train_multinode.sbatch) and Kubernetes
# (infra/k8s/pytorchjob-train.yaml) fill the variables below; you can also set them by hand.
#
# Usage: infra/launch/accelerate_node.sh RECIPE.yaml [key.sub=value ...]
#
# Environment:
#   NUM_MACHINES       number of nodes in the job                       (default 1)
#   MACHINE_RANK       rank of this node, 0 .. NUM_MACHINES-1          (default 0)
#   MAIN_PROCESS_IP    address of the rank-0 node, reachable by all     (default 127.0.0.1)
#   MAIN_PROCESS_PORT  free TCP port on the rank-0 node                 (default 29500)
#   PROCS_PER_NODE     training processes on this node                  (default: GPUs seen by nvidia-smi)
#   (NUM_MACHINES and PROCS_PER_NODE must be whole numbers >= 1: anything else stops the script)
#   ACCELERATE_CONFIG  accelerate config file                           (default infra/accelerate/multi_node.yaml)
#   MIXED_PRECISION    no | bf16 | fp16, overrides the accelerate config (default: the config's value)
#   CHORUS_CPU=1       train on CPUs over gloo (laptops, CI, the tests): no GPU needed
#   ACCELERATE         the accelerate executable                        (default: accelerate on PATH)
#   TRAIN_MODULE       Python module run as `python -m TRAIN_MODULE train ...` on every process
#                      (default chorus.cli; the tests use a wrapper that also records each rank's weights)
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 RECIPE.yaml [key.sub=value ...]" >&2
    exit 2
fi

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

num_machines="${NUM_MACHINES:-1}"
machine_rank="${MACHINE_RANK:-0}"
main_ip="${MAIN_PROCESS_IP:-127.0.0.1}"
main_port="${MAIN_PROCESS_PORT:-29500}"
config="${ACCELERATE_CONFIG:-${repo_root}/infra/accelerate/multi_node.yaml}"
accelerate_bin="${ACCELERATE:-accelerate}"

# A positive whole number, or exit naming the variable (bash arithmetic would read "two" as an unset
# variable and "8x" as an error, and 0 processes would start nothing).
require_count() {
    local name="$1" value="$2"
    if [[ ! "${value}" =~ ^[0-9]+$ ]] || (( 10#${value} < 1 )); then
        echo "${name}=${value@Q} must be a whole number >= 1" >&2
        exit 2
    fi
}

require_count NUM_MACHINES "${num_machines}"
num_machines=$((10#${num_machines}))
if [[ ! "${machine_rank}" =~ ^[0-9]+$ ]]; then
    echo "MACHINE_RANK=${machine_rank@Q} must be a whole number >= 0" >&2
    exit 2
fi
machine_rank=$((10#${machine_rank}))
if [[ ! "${main_port}" =~ ^[0-9]+$ ]] || (( 10#${main_port} < 1 || 10#${main_port} > 65535 )); then
    echo "MAIN_PROCESS_PORT=${main_port@Q} must be a TCP port number (1..65535)" >&2
    exit 2
fi

if [[ -n "${PROCS_PER_NODE:-}" ]]; then
    require_count PROCS_PER_NODE "${PROCS_PER_NODE}"
    procs_per_node=$((10#${PROCS_PER_NODE}))
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    procs_per_node="$(nvidia-smi -L | wc -l)"
else
    procs_per_node=1
fi

if (( machine_rank < 0 || machine_rank >= num_machines )); then
    echo "MACHINE_RANK=${machine_rank} is outside 0..$((num_machines - 1))" >&2
    exit 2
fi

launch_args=(
    --config_file "${config}"
    --num_machines "${num_machines}"
    --machine_rank "${machine_rank}"
    --main_process_ip "${main_ip}"
    --main_process_port "${main_port}"
    --num_processes "$((num_machines * procs_per_node))"
    --same_network
    --dynamo_backend no
)
if [[ -n "${MIXED_PRECISION:-}" ]]; then
    launch_args+=(--mixed_precision "${MIXED_PRECISION}")
fi
if [[ ! -f "${config}" ]]; then
    echo "ACCELERATE_CONFIG=${config} is not a file" >&2
    exit 2
fi
# The config's distributed_type (top-level key; quotes allowed).
distributed_type="$(sed -nE 's/^distributed_type:[[:space:]]*["'"'"']?([A-Za-z_]+)["'"'"']?.*$/\1/p' "${config}" | head -n 1)"
if [[ "${CHORUS_CPU:-0}" == "1" ]]; then
    # accelerate's --cpu starts a single process; MULTI_CPU over gloo needs the multi-process
    # launcher together with ACCELERATE_USE_CPU=1 (see docs/scaling.md).
    export ACCELERATE_USE_CPU=1
    if [[ "${distributed_type}" == "DEEPSPEED" ]]; then
        # No --multi_gpu here: it would replace the config's DEEPSPEED with plain DDP. The DeepSpeed
        # launcher (torchrun) already starts every process; chorus train then drops
        # ACCELERATE_USE_CPU and makes the gloo process group itself.
        :
    elif (( num_machines * procs_per_node > 1 )); then
        launch_args+=(--multi_gpu)
    fi
fi

echo "chorus node ${machine_rank}/${num_machines}: ${procs_per_node} processes, rendezvous ${main_ip}:${main_port}" >&2
exec "${accelerate_bin}" launch "${launch_args[@]}" -m "${TRAIN_MODULE:-chorus.cli}" train "$@"

#!/usr/bin/env bash
# Starts an MLflow tracking server that a whole team (or every node of a cluster) logs to.
# Runs in the foreground (exec), so a supervisor, `srun`, a container or a test owns the process.
#
# Usage: infra/mlflow/start_server.sh [options] [-- extra `mlflow server` flags]
#   --home DIR          where local state goes (default $MLFLOW_HOME or ./mlflow-server)
#   --backend URI       run/metric store: sqlite:///ABS/PATH.db (default DIR/mlflow.db) or
#                       postgresql://USER@HOST:5432/DB (needs psycopg2; password via ~/.pgpass or PGPASSWORD)
#   --artifacts URI     artifact root: a shared path (default DIR/artifacts) or an object store
#                       (s3://bucket/prefix, gs://..., needs boto3/google-cloud-storage)
#   --host ADDR         interface to bind (default 127.0.0.1: this machine only). Use 0.0.0.0 or a
#                       cluster address to serve other nodes, and pass --allowed-hosts too.
#   --port N            TCP port (default 5000)
#   --workers N         server worker processes (default 1; 4 for a busy team server)
#   --allowed-hosts H   comma-separated Host headers to accept (MLflow's DNS-rebinding guard);
#                       needed when clients reach the server by a name that is not localhost/private IP
#   --auth              enable MLflow's basic-auth app: every request needs a user and password.
#                       The admin account is created on first start from MLFLOW_AUTH_ADMIN_USERNAME
#                       (default admin) and MLFLOW_AUTH_ADMIN_PASSWORD (required). Users live in
#                       --auth-db (default sqlite DIR/basic_auth.db). Clients set
#                       MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD. The CSRF key comes from
#                       MLFLOW_FLASK_SERVER_SECRET_KEY, else one is made and kept in DIR/flask_secret_key.
#   --auth-db URI       the user/permission database of the basic-auth app
# Clients then set MLFLOW_TRACKING_URI=http://HOST:PORT (recipe key tracking.uri does the same).
set -euo pipefail

home="${MLFLOW_HOME:-${PWD}/mlflow-server}"
backend=""
artifacts=""
host="127.0.0.1"
port="5000"
workers="1"
allowed_hosts=""
auth=0
auth_db=""
mlflow_bin="${MLFLOW:-mlflow}"
extra=()

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --home) home="$2"; shift 2 ;;
        --backend) backend="$2"; shift 2 ;;
        --artifacts) artifacts="$2"; shift 2 ;;
        --host) host="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        --allowed-hosts) allowed_hosts="$2"; shift 2 ;;
        --auth) auth=1; shift ;;
        --auth-db) auth_db="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

mkdir -p "${home}"
home="$(cd "${home}" && pwd)"   # sqlite URIs and artifact paths must be absolute
backend="${backend:-sqlite:///${home}/mlflow.db}"
artifacts="${artifacts:-${home}/artifacts}"
if [[ "${artifacts}" != *://* ]]; then
    mkdir -p "${artifacts}"
fi

args=(
    server
    --backend-store-uri "${backend}"
    --artifacts-destination "${artifacts}"
    --serve-artifacts
    --host "${host}"
    --port "${port}"
    --workers "${workers}"
)
if [[ -n "${allowed_hosts}" ]]; then
    args+=(--allowed-hosts "${allowed_hosts}")
fi

if (( auth )); then
    if [[ -z "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ]]; then
        echo "--auth needs MLFLOW_AUTH_ADMIN_PASSWORD (the admin password set on first start)" >&2
        exit 2
    fi
    if [[ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ]]; then
        # The password stays in the environment, never in this file.
        auth_ini="${home}/basic_auth.ini"
        cat > "${auth_ini}" <<INI
[mlflow]
default_permission = READ
database_uri = ${auth_db:-sqlite:///${home}/basic_auth.db}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
        export MLFLOW_AUTH_CONFIG_PATH="${auth_ini}"
    fi
    if [[ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]]; then
        # The auth app's CSRF key must survive restarts (and be shared by all workers): keep one
        # per server home, readable only by its owner.
        key_file="${home}/flask_secret_key"
        if [[ ! -s "${key_file}" ]]; then
            (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "${key_file}")
        fi
        MLFLOW_FLASK_SERVER_SECRET_KEY="$(cat "${key_file}")"
        export MLFLOW_FLASK_SERVER_SECRET_KEY
    fi
    args+=(--app-name basic-auth)
fi

echo "mlflow server: store ${backend}, artifacts ${artifacts}, http://${host}:${port}$( (( auth )) && echo ' (basic auth)')" >&2
exec "${mlflow_bin}" "${args[@]}" "${extra[@]}"

#!/usr/bin/env bash
# Starts, idempotently, the local servers bindery and its tests use, and fails loudly
# when one cannot be started. Sourced by scripts/test and scripts/run; each function
# can also be run on its own: `bash scripts/services.sh postgres`.
set -euo pipefail

wait_for() { # name, attempts, command...
  local name=$1 attempts=$2; shift 2
  for _ in $(seq "$attempts"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "error: $name did not come up" >&2
  return 1
}

ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then return 0; fi
  echo "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null; then
    local version
    version=$(ls /etc/postgresql | sort -V | tail -1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  else
    echo "error: PostgreSQL is not running on 127.0.0.1:5432 and pg_ctlcluster is not installed" >&2
    return 1
  fi
  wait_for PostgreSQL 30 pg_isready -h 127.0.0.1 -p 5432
}

ensure_mariadb() {
  if mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1; then return 0; fi
  echo "starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for MariaDB 60 mariadb-admin -h 127.0.0.1 -u root ping
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return 0; fi
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis 30 redis-cli -h 127.0.0.1 -p 6379 ping
}

ensure_rabbitmq() {
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    echo "starting RabbitMQ"
    rabbitmq-server -detached || true
    wait_for RabbitMQ 60 rabbitmqctl -q status
  fi
  # The rabbitmq backend drives RabbitMQ through its management API.
  if ! rabbitmq-plugins -q list -e rabbitmq_management 2>/dev/null | grep -q rabbitmq_management; then
    echo "enabling the RabbitMQ management plugin"
    rabbitmq-plugins -q enable rabbitmq_management
  fi
  wait_for "RabbitMQ management API" 60 curl -sf -o /dev/null -u guest:guest http://127.0.0.1:15672/api/overview
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  for service in "${@:-postgres}"; do "ensure_$service"; done
fi

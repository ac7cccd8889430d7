#!/usr/bin/env bash
# Instruction profile of the request paths measured against the reference (issue 18):
# GET /v2/catalog, last_operation with `operation` and last_operation without it.
#
#   cargo bench --bench osb --no-run          # the bench binary, release profile
#   benches/profile/callgrind.sh [REQUESTS]   # default 2000 per path
#
# Runs the bench binary's server role (bindery, no-op backend, as `cargo bench --bench osb`
# runs it) under `valgrind --tool=callgrind`, against a database of its own on the
# benchmark's PostgreSQL (BINDERY_BENCH_DATABASE_SERVER, default
# postgres://postgres@127.0.0.1:5432, sslmode=disable), provisions 200 instances
# asynchronously, then sends REQUESTS requests per path over one keep-alive connection
# (curl), zeroing the counters before and dumping them after each path. Then the same
# for the reference role (benches/osb/reference.rs). Prints, per dump, the groups of
# benches/profile/callgrind_groups.py; the dumps stay in the printed directory for
# callgrind_annotate. Instruction counts are user space only (no kernel), and valgrind
# hides SHA-NI from the program, so SHA-256 runs its software path here.
set -euo pipefail

requests=${1:-2000}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(ls -t "$root"/target/release/deps/osb-* | grep -v '\.d$' | head -n 1)
out=$(mktemp -d /tmp/bindery-callgrind.XXXXXX)
server=${BINDERY_BENCH_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
database=bindery_profile_$(date +%s)
const() { grep -o "$1: &str = \"[^\"]*" "$root/benches/osb/main.rs" | cut -d'"' -f2; }
user=$(const USER)
password=$(const PASSWORD)
cp "$bin" "$out/osb"   # a rebuild during the run must not change the profiled binary
sed -E 's/^([[:space:]]*)kind:.*/\1kind: noop/' "$root/catalog.yaml" > "$out/catalog.yaml"

export DATABASE_URL="$server/$database?sslmode=disable"
export BINDERY_LISTEN=127.0.0.1:0 BINDERY_CATALOG="$out/catalog.yaml"
export BINDERY_USERNAME="$user" BINDERY_PASSWORD="$password"
BINDERY_ENCRYPTION_KEYS=$(const KEY)
export BINDERY_ENCRYPTION_KEYS
curl_osb() { curl -s -u "$user:$password" -H 'X-Broker-API-Version: 2.13' "$@"; }

feeder=
cleanup() {
    [ -n "$feeder" ] && kill "$feeder" 2>/dev/null || true
    psql "$server/postgres" -qAtc "drop database if exists $database with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# start ROLE NAME: the role under callgrind; sets $pid and $port. The server stops when
# its stdin (a `tail -f /dev/null` we kill) closes.
start() {
    mkfifo "$out/$2.stdin"
    tail -f /dev/null > "$out/$2.stdin" &
    feeder=$!
    BINDERY_BENCH_ROLE=$1 valgrind --tool=callgrind --callgrind-out-file="$out/$2.%p" \
        "$out/osb" < "$out/$2.stdin" > "$out/$2.stdout" 2> "$out/$2.log" &
    pid=$!
    for _ in $(seq 600); do
        port=$(sed -n 's/^BINDERY_BENCH_PORT //p' "$out/$2.stdout")
        [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/readyz" > /dev/null && return
        sleep 0.5
    done
    echo "$2 did not start; see $out/$2.log" >&2
    exit 1
}

stop() {
    kill "$feeder"
    feeder=
    wait "$pid" || true
}

# urls PATHS FILE: a curl config of $requests urls cycling over the paths.
urls() {
    awk -v n="$requests" -v port="$port" '{p[NR] = $0} END {
        for (i = 0; i < n; i++) printf "url = \"http://127.0.0.1:%s%s\"\noutput = \"/dev/null\"\n", port, p[i % NR + 1]
    }' "$1" > "$2"
}

# profile NAME: every path once unmeasured, then each measured into its own dump.
profile() {
    for path in catalog token latest; do
        urls "$out/paths_$path" "$out/$1-$path.curl"
        curl_osb -K "$out/$1-$path.curl" > /dev/null
    done
    for path in catalog token latest; do
        callgrind_control -z "$pid" > /dev/null
        codes=$(curl_osb -w '%{http_code}\n' -K "$out/$1-$path.curl" | sort | uniq -c | tr -s ' ')
        callgrind_control -d "$1-$path" "$pid" > /dev/null
        echo "$1 $path:$codes" >&2
    done
}

start server bindery
# The first bindable plan's ids; parameters as the bench sends them.
body=$(curl_osb "http://127.0.0.1:$port/v2/catalog" | python3 -c '
import json, sys
for s in json.load(sys.stdin)["services"]:
    if s.get("bindable") is not True:
        continue
    for p in s["plans"]:
        if p.get("bindable") is False:
            continue
        print(json.dumps({"service_id": s["id"], "plan_id": p["id"],
            "organization_guid": "bench-org", "space_guid": "bench-space",
            "parameters": {"connection_limit": 5},
            "context": {"platform": "kubernetes", "namespace": "bench"}}))
        sys.exit()
')
for _ in $(seq 200); do
    printf 'url = "http://127.0.0.1:%s/v2/service_instances/%s?accepts_incomplete=true"\noutput = "/dev/null"\n' \
        "$port" "$(cat /proc/sys/kernel/random/uuid)"
done > "$out/provision.curl"
codes=$(curl_osb -X PUT -H 'Content-Type: application/json' -d "$body" -w '%{http_code}\n' -K "$out/provision.curl" | sort | uniq -c | tr -s ' ')
echo "bindery provision:$codes" >&2
while [ "$(psql "$DATABASE_URL" -qAtc "select count(*) from operation where state <> 'succeeded'")" != 0 ]; do
    sleep 1
done
echo /v2/catalog > "$out/paths_catalog"
psql "$DATABASE_URL" -qAtc "select '/v2/service_instances/' || instance_id || '/last_operation?operation=' || operation_id from operation" > "$out/paths_token"
psql "$DATABASE_URL" -qAtc "select '/v2/service_instances/' || instance_id || '/last_operation' from operation" > "$out/paths_latest"
profile bindery
bindery_pid=$pid
# The reference serves bindery's catalog bytes (as in the bench).
curl_osb "http://127.0.0.1:$port/v2/catalog" > "$out/reference-catalog.json"
stop

export BINDERY_BENCH_REFERENCE_CATALOG="$out/reference-catalog.json"
start reference reference
profile reference
reference_pid=$pid
stop

n=1
for path in catalog token latest; do
    echo
    echo "### bindery, $path"
    python3 "$root/benches/profile/callgrind_groups.py" "$out/bindery.$bindery_pid.$n" "$requests"
    echo
    echo "### reference, $path"
    python3 "$root/benches/profile/callgrind_groups.py" "$out/reference.$reference_pid.$n" "$requests"
    n=$((n + 1))
done
echo
echo "dumps: $out (callgrind_annotate --inclusive=yes $out/bindery.$bindery_pid.1)"

#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for the controller tests: etcd,
# kube-apiserver and kube-controller-manager v1.20.2, built once from Debian's sources
# and cached. Sourced (functions below) or run:
#
#   bash scripts/k8s.sh build          # install what is needed, build once, cache
#   bash scripts/k8s.sh start DIR      # start all three on free loopback ports
#   bash scripts/k8s.sh stop DIR       # stop them (nothing left running)
#   bash scripts/k8s.sh env DIR        # print the DIR/env of a started environment
#
# k8s_start writes DIR/env (KUBE_API, KUBE_TOKEN, KUBE_CA, KUBECONFIG, KUBE_ETCD) and
# DIR/kubeconfig, with certificates, the token file, etcd's data and the logs under DIR.
#
# Where it comes from (no download other than Debian's packages is possible here):
# - kube-apiserver and kube-controller-manager: Debian bookworm's source package
#   `kubernetes` (1.20.5+really1.20.2, every Go dependency vendored), built in GOPATH
#   mode after its `make gen_openapi` step with Go 1.15 (`golang-1.15-go`, from Debian
#   bullseye, pinned so that nothing else is taken from bullseye). A newer Go compiles it
#   too, but the vendored reflect2 then crashes the server on the first serialised map.
# - etcd 3.4 and kubectl 1.20.2: unpacked from Debian's `etcd-server` and
#   `kubernetes-client` packages with `dpkg -x` (so no system service is installed).
#
# The cache (BINDERY_K8S_CACHE, default /var/cache/bindery-k8s/v1.20.2) holds only bin/
# and build-info; the source tree and Go's build cache are deleted after the build.
set -euo pipefail

K8S_VERSION=v1.20.2
K8S_CACHE=${BINDERY_K8S_CACHE:-/var/cache/bindery-k8s/$K8S_VERSION}
K8S_BIN=$K8S_CACHE/bin
K8S_GO=/usr/lib/go-1.15/bin
# The commit of the v1.20.2 tag, as Debian's own kubectl reports it.
K8S_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56

k8s_log() { echo "k8s: $*" >&2; }
k8s_err() { echo "k8s: error: $*" >&2; }
k8s_now() { date +%s.%N; }
# `grep -q` stops reading at the first match; under pipefail the writer then dies of
# SIGPIPE and the whole pipeline fails although it matched (seen: "golang-1.15-go ... is not
# installable" right after apt-get update). This reads all of its input.
k8s_grep() { grep "$@" >/dev/null; }
k8s_since() { awk -v a="$1" -v b="$(k8s_now)" 'BEGIN { printf "%.1f", b - a }'; }

# Runs one build step with its output in LOG; says how long it took, or fails loudly
# with the end of the log.
k8s_step() { # name, log, command...
  local name=$1 log=$2 t0
  shift 2
  t0=$(k8s_now)
  k8s_log "$name ..."
  echo "=== $name: $*" >>"$log"
  if ! "$@" >>"$log" 2>&1; then
    k8s_err "$name failed after $(k8s_since "$t0") s; the end of $log:"
    tail -n 40 "$log" >&2
    return 1
  fi
  k8s_log "$name: done in $(k8s_since "$t0") s"
}

k8s_cached() {
  local b
  for b in etcd kube-apiserver kube-controller-manager kubectl; do
    [[ -x $K8S_BIN/$b ]] || return 1
  done
  [[ -f $K8S_CACHE/build-info ]]
}

# ---------------------------------------------------------------------------------------
# Build

k8s_apt_setup() {
  local changed=0 src=/etc/apt/sources.list.d/bindery-k8s.sources
  local pin=/etc/apt/preferences.d/bindery-k8s-bullseye
  if [[ ! -f $src ]]; then
    # deb-src for bookworm (the kubernetes source package) and bullseye's binaries for
    # golang-1.15-go alone; the pin below keeps every other bullseye package out.
    cat >"$src" <<'EOF'
# Written by bindery's scripts/k8s.sh: bookworm's sources (kubernetes) and bullseye's
# golang-1.15-go for building kube-apiserver v1.20.2.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    changed=1
  fi
  if [[ ! -f $pin ]]; then
    cat >"$pin" <<'EOF'
# Written by bindery's scripts/k8s.sh: bullseye only for golang-1.15-go.
Package: *
Pin: release n=bullseye
Pin-Priority: -1

Package: golang-1.15-go golang-1.15-src
Pin: release n=bullseye
Pin-Priority: 500
EOF
    changed=1
  fi
  if [[ $changed == 1 ]] || ! apt-cache showsrc kubernetes 2>/dev/null | k8s_grep 'really1\.20\.2' ||
    ! apt-cache policy golang-1.15-go 2>/dev/null | k8s_grep 'Candidate: 1\.15'; then
    apt-get update -q
  fi
  apt-cache showsrc kubernetes 2>/dev/null | k8s_grep 'really1\.20\.2' || {
    echo "Debian's source package kubernetes 1.20.2 is not known to apt (deb-src bookworm)"
    return 1
  }
  apt-cache policy golang-1.15-go 2>/dev/null | k8s_grep 'Candidate: 1\.15' || {
    echo "golang-1.15-go (Debian bullseye) is not installable"
    return 1
  }
}

k8s_apt_install() {
  local missing=() p
  for p in dpkg-dev make curl openssl ca-certificates util-linux golang-1.15-go; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | k8s_grep 'install ok installed' || missing+=("$p")
  done
  [[ ${#missing[@]} == 0 ]] && return 0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

k8s_fetch_source() { # work dir
  local work=$1
  (cd "$work" && apt-get source --download-only kubernetes) &&
    (cd "$work" && dpkg-source -x kubernetes_*.dsc src) &&
    grep -q 'gitMajor\|KUBE_GIT' "$work/src/hack/lib/version.sh"
}

k8s_gen_openapi() { # source dir
  (cd "$1" && PATH=$K8S_GO:$PATH make gen_openapi)
}

k8s_go_build() { # source dir, output dir
  local src=$1 out=$2 v ldflags="-s -w" date
  mkdir -p "$src/.go/src/k8s.io" "$out"
  [[ -L $src/.go/src/k8s.io/kubernetes ]] || ln -s ../../.. "$src/.go/src/k8s.io/kubernetes"
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  # As hack/lib/version.sh does: the flag --version reads component-base's, the server's
  # /version client-go's.
  for v in k8s.io/kubernetes/vendor/k8s.io/component-base/version \
    k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    ldflags+=" -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=20"
    ldflags+=" -X $v.gitCommit=$K8S_GIT_COMMIT -X $v.gitTreeState=archive -X $v.buildDate=$date"
  done
  (
    cd "$src/.go/src/k8s.io/kubernetes" &&
      PATH=$K8S_GO:$PATH GOPATH=$src/.go GO111MODULE=off CGO_ENABLED=0 GOFLAGS='' \
        go build -p "${K8S_BUILD_JOBS:-2}" -o "$out/" -ldflags "$ldflags" \
        ./cmd/kube-apiserver ./cmd/kube-controller-manager
  )
}

k8s_unpack_debs() { # work dir, output dir
  local work=$1 out=$2
  (cd "$work" && apt-get download etcd-server kubernetes-client) &&
    mkdir -p "$work/debs" &&
    dpkg -x "$work"/etcd-server_*.deb "$work/debs" &&
    dpkg -x "$work"/kubernetes-client_*.deb "$work/debs" &&
    cp "$work/debs/usr/bin/etcd" "$work/debs/usr/bin/kubectl" "$out/"
}

k8s_verify_bins() { # dir
  local d=$1
  "$d/kube-apiserver" --version | k8s_grep -x "Kubernetes $K8S_VERSION" &&
    "$d/kube-controller-manager" --version | k8s_grep -x "Kubernetes $K8S_VERSION" &&
    "$d/etcd" --version | k8s_grep '^etcd Version: 3\.4\.' &&
    "$d/kubectl" version --client --short | k8s_grep "$K8S_VERSION"
}

# Installs what it needs, builds kube-apiserver and kube-controller-manager once and
# caches them with etcd and kubectl under $K8S_BIN. A second call returns at once.
k8s_build() {
  if k8s_cached; then
    k8s_log "cached: $K8S_BIN"
    return 0
  fi
  mkdir -p "$(dirname "$K8S_CACHE")"
  # One build at a time; a second caller waits, then finds the cache.
  exec {k8s_lock_fd}>"$K8S_CACHE.lock"
  flock "$k8s_lock_fd"
  if k8s_cached; then
    exec {k8s_lock_fd}>&-
    k8s_log "cached: $K8S_BIN"
    return 0
  fi
  if [[ $(id -u) != 0 ]]; then
    k8s_err "the build installs Debian packages and writes $K8S_CACHE: run it as root"
    exec {k8s_lock_fd}>&-
    return 1
  fi
  local t0 work log rc=0
  t0=$(k8s_now)
  work=$K8S_CACHE.build
  log=$(dirname "$K8S_CACHE")/build-$K8S_VERSION.log
  rm -rf "$work"
  mkdir -p "$work/home" "$work/bin"
  : >"$log"
  k8s_log "building Kubernetes $K8S_VERSION into $K8S_CACHE (log: $log)"
  (
    export HOME=$work/home GOCACHE=$work/gocache
    k8s_step "apt sources (bookworm deb-src, bullseye golang-1.15-go)" "$log" k8s_apt_setup || exit 1
    k8s_step "packages (golang-1.15-go, dpkg-dev, make, curl, openssl)" "$log" k8s_apt_install || exit 1
    k8s_step "source package kubernetes (apt-get source)" "$log" k8s_fetch_source "$work" || exit 1
    k8s_step "make gen_openapi" "$log" k8s_gen_openapi "$work/src" || exit 1
    k8s_step "go build kube-apiserver kube-controller-manager" "$log" \
      k8s_go_build "$work/src" "$work/bin" || exit 1
    k8s_step "etcd and kubectl from Debian's packages (dpkg -x)" "$log" \
      k8s_unpack_debs "$work" "$work/bin" || exit 1
    k8s_step "version check" "$log" k8s_verify_bins "$work/bin" || exit 1
  ) || rc=$?
  if [[ $rc != 0 ]]; then
    k8s_err "building Kubernetes $K8S_VERSION failed; the work tree is kept in $work, the log is $log"
    exec {k8s_lock_fd}>&-
    return "$rc"
  fi
  {
    echo "kubernetes $K8S_VERSION, built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(k8s_since "$t0") s"
    echo "source: Debian $(cd "$work" && ls kubernetes_*.dsc)"
    echo "go: $("$K8S_GO/go" version)"
    "$work/bin/etcd" --version | head -1
    "$work/bin/kubectl" version --client --short
  } >"$work/bin/.build-info"
  rm -rf "$K8S_BIN"
  mkdir -p "$K8S_CACHE"
  mv "$work/bin/.build-info" "$K8S_CACHE/build-info"
  mv "$work/bin" "$K8S_BIN"
  rm -rf "$work"
  exec {k8s_lock_fd}>&-
  k8s_log "built and cached in $(k8s_since "$t0") s: $K8S_BIN ($(du -sh "$K8S_CACHE" | cut -f1))"
}

# ---------------------------------------------------------------------------------------
# Start and stop

# Sets k8s_port to a loopback port nothing listens on, outside the kernel's ephemeral
# range, and not one of those already handed out by this start.
k8s_free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    [[ " ${k8s_taken_ports:-} " == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      k8s_taken_ports="${k8s_taken_ports:-} $p"
      k8s_port=$p
      return 0
    fi
  done
  k8s_err "no free loopback port found"
  return 1
}

k8s_alive() { # dir, name
  local pid exe
  pid=$(cat "$1/run/$2.pid" 2>/dev/null) || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  # The executable, not the command line: /proc/PID/cmdline reads empty for a moment
  # while a process execs, which once made a starting etcd look dead (CI, session 5).
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  [[ $exe == */"$2" ]]
}

# Starts NAME detached (its own session), its output in DIR/logs/NAME.log, its pid in
# DIR/run/NAME.pid.
k8s_spawn() { # dir, name, args...
  local dir=$1 name=$2
  shift 2
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$dir/run/$name.pid" "$K8S_BIN/$name" "$@" \
    </dev/null >>"$dir/logs/$name.log" 2>&1 &
  # Returns once the pid file is written and the bash that wrote it has exec'd NAME, so
  # that k8s_alive never looks at the short-lived bash.
  for _ in $(seq 250); do
    [[ -s $dir/run/$name.pid ]] && k8s_alive "$dir" "$name" && return 0
    sleep 0.02
  done
  k8s_err "$name did not start; the end of $dir/logs/$name.log:"
  tail -n 30 "$dir/logs/$name.log" >&2
  return 1
}

# Waits until COMMAND succeeds while NAME runs; fails with NAME's log when it exits or
# the time is up.
k8s_wait() { # dir, name, seconds, command...
  local dir=$1 name=$2 secs=$3 end
  shift 3
  end=$(($(date +%s) + secs))
  while (($(date +%s) < end)); do
    if ! k8s_alive "$dir" "$name"; then
      k8s_err "$name exited; the end of $dir/logs/$name.log:"
      tail -n 30 "$dir/logs/$name.log" >&2
      return 1
    fi
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  k8s_err "$name was not ready after $secs s; the end of $dir/logs/$name.log:"
  tail -n 30 "$dir/logs/$name.log" >&2
  return 1
}

k8s_certs() { # pki dir
  local pki=$1
  (
    set -e
    cd "$pki"
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -keyout ca.key -out ca.crt -days 3650 -subj "/CN=bindery-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
    cat >apiserver.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1
EOF
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 3650 -extfile apiserver.ext
    # Service-account tokens: signed by the controller-manager and the apiserver's
    # TokenRequest with sa.key, checked by the apiserver with sa.pub.
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
    chmod 600 ./*.key
  ) >"$pki/openssl.log" 2>&1 || {
    k8s_err "certificates could not be made; see $pki/openssl.log"
    tail -n 20 "$pki/openssl.log" >&2
    return 1
  }
}

k8s_api_ready() { # dir
  local out
  out=$(curl -sS --max-time 2 --cacert "$1/pki/ca.crt" -H "Authorization: Bearer $(cat "$1/token")" \
    "$(cat "$1/api-url")/readyz") && [[ $out == ok ]]
}

k8s_default_sa() { # dir: the controller-manager created the default service account
  curl -sSf --max-time 2 --cacert "$1/pki/ca.crt" -H "Authorization: Bearer $(cat "$1/token")" \
    "$(cat "$1/api-url")/api/v1/namespaces/default/serviceaccounts/default" -o /dev/null
}

# Starts etcd, kube-apiserver and kube-controller-manager with everything under DIR,
# waits until the API server is ready and the controller-manager works, and writes
# DIR/env and DIR/kubeconfig. Exports KUBE_API, KUBE_TOKEN, KUBE_CA and KUBECONFIG when
# sourced. Does nothing but print the env when DIR's servers already run.
k8s_start() { # dir
  local dir=${1:?usage: k8s_start DIR}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  k8s_build || return 1
  if k8s_alive "$dir" etcd && k8s_alive "$dir" kube-apiserver && k8s_alive "$dir" kube-controller-manager &&
    [[ -f $dir/env ]] && k8s_api_ready "$dir"; then
    k8s_log "already running: $dir/env"
    k8s_export "$dir"
    return 0
  fi
  k8s_stop "$dir" >/dev/null 2>&1 || true
  local t0 t1 etcd_port peer_port api_port cm_port token api
  t0=$(k8s_now)
  rm -rf "$dir/etcd" "$dir/pki" "$dir/run" "$dir/cm-certs" "$dir/env"
  mkdir -p "$dir/etcd" "$dir/pki" "$dir/run" "$dir/logs" "$dir/cm-certs"
  chmod 700 "$dir/etcd" "$dir/pki"
  k8s_taken_ports=""
  k8s_free_port && etcd_port=$k8s_port || return 1
  k8s_free_port && peer_port=$k8s_port || return 1
  k8s_free_port && api_port=$k8s_port || return 1
  k8s_free_port && cm_port=$k8s_port || return 1
  api=https://127.0.0.1:$api_port
  token=$(openssl rand -hex 32)
  echo "$token" >"$dir/token"
  echo "$api" >"$dir/api-url"
  printf '%s,admin,admin,system:masters\n' "$token" >"$dir/pki/tokens.csv"
  chmod 600 "$dir/token" "$dir/pki/tokens.csv"
  k8s_certs "$dir/pki" || return 1
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: bindery-test
  cluster:
    server: $api
    certificate-authority: $dir/pki/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: bindery-test
  context:
    cluster: bindery-test
    user: admin
current-context: bindery-test
EOF
  chmod 600 "$dir/kubeconfig"
  k8s_log "certificates and kubeconfig: $(k8s_since "$t0") s"

  t1=$(k8s_now)
  k8s_spawn "$dir" etcd --name bindery-test --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "bindery-test=http://127.0.0.1:$peer_port" --initial-cluster-state new \
    --logger zap --log-outputs stderr --log-level warn || { k8s_stop "$dir"; return 1; }
  k8s_wait "$dir" etcd 30 curl -sf --max-time 2 "http://127.0.0.1:$etcd_port/health" || { k8s_stop "$dir"; return 1; }
  k8s_log "etcd ready on 127.0.0.1:$etcd_port in $(k8s_since "$t1") s"

  t1=$(k8s_now)
  k8s_spawn "$dir" kube-apiserver \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --secure-port "$api_port" --insecure-port 0 \
    --advertise-address 127.0.0.1 --endpoint-reconciler-type none \
    --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --token-auth-file "$dir/pki/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-key-file "$dir/pki/sa.pub" \
    --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.0.0.0/24 \
    --profiling=false --v=1 || { k8s_stop "$dir"; return 1; }
  k8s_wait "$dir" kube-apiserver 90 k8s_api_ready "$dir" || { k8s_stop "$dir"; return 1; }
  k8s_log "kube-apiserver ready on $api in $(k8s_since "$t1") s"

  t1=$(k8s_now)
  k8s_spawn "$dir" kube-controller-manager \
    --kubeconfig "$dir/kubeconfig" \
    --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$cm_port" --port 0 --cert-dir "$dir/cm-certs" \
    --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/ca.crt" \
    --cluster-signing-cert-file "$dir/pki/ca.crt" --cluster-signing-key-file "$dir/pki/ca.key" \
    --use-service-account-credentials=false --controllers '*' --leader-elect=false \
    --profiling=false --v=1 || { k8s_stop "$dir"; return 1; }
  k8s_wait "$dir" kube-controller-manager 60 \
    curl -sfk --max-time 2 "https://127.0.0.1:$cm_port/healthz" || { k8s_stop "$dir"; return 1; }
  k8s_wait "$dir" kube-controller-manager 60 k8s_default_sa "$dir" || { k8s_stop "$dir"; return 1; }
  k8s_log "kube-controller-manager working (default service account made) in $(k8s_since "$t1") s"

  cat >"$dir/env" <<EOF
KUBE_API=$api
KUBE_TOKEN=$token
KUBE_CA=$dir/pki/ca.crt
KUBECONFIG=$dir/kubeconfig
KUBE_ETCD=http://127.0.0.1:$etcd_port
KUBE_BIN=$K8S_BIN
EOF
  k8s_log "Kubernetes $K8S_VERSION up in $(k8s_since "$t0") s: $api (env: $dir/env)"
  k8s_export "$dir"
}

k8s_export() { # dir
  local k v
  while IFS='=' read -r k v; do
    [[ -n $k ]] && export "$k=$v"
  done <"$1/env"
}

# Stops DIR's servers (controller-manager, apiserver, etcd), TERM then KILL after 10 s.
k8s_stop() { # dir
  local dir=${1:?usage: k8s_stop DIR} name pid
  [[ -d $dir/run ]] || return 0
  for name in kube-controller-manager kube-apiserver etcd; do
    if k8s_alive "$dir" "$name"; then
      pid=$(cat "$dir/run/$name.pid")
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        k8s_log "$name ($pid) did not stop on TERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
      fi
    fi
    rm -f "$dir/run/$name.pid"
  done
  k8s_log "stopped: $dir"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  case "${1:-}" in
    build) k8s_build ;;
    start) k8s_start "${2:?usage: $0 start DIR}" && cat "$2/env" ;;
    stop) k8s_stop "${2:?usage: $0 stop DIR}" ;;
    env) cat "${2:?usage: $0 env DIR}/env" ;;
    *)
      echo "usage: $0 build | start DIR | stop DIR | env DIR" >&2
      exit 2
      ;;
  esac
fi

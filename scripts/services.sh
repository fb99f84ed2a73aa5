#!/usr/bin/env bash
# Local services for graphbuild's integration tests and benchmarks:
#   * a Docker engine (dockerd) on a private socket,
#   * a CNCF Distribution registry (plain HTTP, no auth) on 127.0.0.1,
#   * a Debian bookworm + python3 base rootfs tarball, imported as a docker image,
#   * on demand only (`token-registry`), a second registry with Docker's token authentication
#     and the small token service it trusts (scripts/token_server.py), for the tests of
#     registry credentials; the commands of the README never start it.
#
# Usage:
#   eval "$(scripts/services.sh)"      # install/start/build what is missing, print exports
#   scripts/services.sh env            # print exports if everything is already up (else exit 1)
#   scripts/services.sh token-registry # start the token-auth registry; print its exports
#   scripts/services.sh stop           # stop the daemons this script started (by pidfile)
#
# Idempotent: running services are reused, the base tarball is built once per machine.
# Only the `export` lines go to stdout; all progress goes to stderr.
#
# Environment:
#   GRAPHBUILD_STATE          state dir (default /var/lib/graphbuild-services)
#   GRAPHBUILD_REGISTRY_PORT  registry port on 127.0.0.1 (default 5000)
#   GRAPHBUILD_DEBIAN_MIRROR  override the Debian mirror (default: read from apt's sources)
#   GRAPHBUILD_TOKEN_REGISTRY_PORT  the token-auth registry's port (default 5001)
#   GRAPHBUILD_TOKEN_SERVER_PORT    its token service's port (default 5002)
set -euo pipefail

STATE="${GRAPHBUILD_STATE:-/var/lib/graphbuild-services}"
PORT="${GRAPHBUILD_REGISTRY_PORT:-5000}"

SOCK="$STATE/docker.sock"
DOCKER_HOST_URI="unix://$SOCK"
DOCKERD_PID="$STATE/docker.pid"
DOCKERD_LOG="$STATE/dockerd.log"

REGISTRY_ADDR="127.0.0.1:$PORT"
REGISTRY_CONFIG="$STATE/registry-config.yml"
REGISTRY_PID="$STATE/registry.pid"
REGISTRY_LOG="$STATE/registry.log"

BASE_DIR="$STATE/base"
BASE_TAR="$BASE_DIR/debian-bookworm-python3.tar"
BASE_SHA="$BASE_TAR.sha256"
BASE_IMAGE="graphbuild-base:bookworm-python3"
BASE_SUITE="bookworm"

APT_PACKAGES=(docker.io docker-registry debootstrap skopeo umoci git ca-certificates)
TOKEN_APT_PACKAGES=(docker-registry openssl python3-cryptography)

TOKEN_DIR="$STATE/token-registry"
TOKEN_REGISTRY_ADDR="127.0.0.1:${GRAPHBUILD_TOKEN_REGISTRY_PORT:-5001}"
TOKEN_SERVER_ADDR="127.0.0.1:${GRAPHBUILD_TOKEN_SERVER_PORT:-5002}"
TOKEN_REGISTRY_PID="$TOKEN_DIR/registry.pid"
TOKEN_SERVER_PID="$TOKEN_DIR/token-server.pid"
TOKEN_SERVICE="graphbuild-token-registry"
TOKEN_ISSUER="graphbuild-token-server"
TOKEN_SERVER_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/token_server.py"

export LC_ALL=C

# Everything but the final export lines goes to stderr: keep the real stdout on fd 3.
exec 3>&1 1>&2

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# Prefer the client shipped with docker.io (matches the daemon); fall back to PATH.
docker_cli() {
    if [[ -x /usr/bin/docker ]]; then
        DOCKER_HOST="$DOCKER_HOST_URI" /usr/bin/docker "$@"
    else
        DOCKER_HOST="$DOCKER_HOST_URI" docker "$@"
    fi
}

docker_up() { [[ -S "$SOCK" ]] && docker_cli info >/dev/null 2>&1; }
registry_up() { curl -sf -o /dev/null --max-time 2 "http://$REGISTRY_ADDR/v2/"; }

# pid_alive PIDFILE NAME: the pid in PIDFILE is a live process whose command is NAME.
pid_alive() {
    local pidfile="$1" name="$2" pid comm
    [[ -s "$pidfile" ]] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    [[ "$comm" == "$name" ]]
}

print_exports() {
    printf 'export DOCKER_HOST=%s\n' "$DOCKER_HOST_URI" >&3
    printf 'export GRAPHBUILD_REGISTRY=%s\n' "$REGISTRY_ADDR" >&3
    printf 'export GRAPHBUILD_BASE_TARBALL=%s\n' "$BASE_TAR" >&3
}

take_lock() {
    mkdir -p "$STATE"
    exec 9>"$STATE/.lock"
    if ! flock -n 9; then
        log "another services.sh holds $STATE/.lock; waiting"
        flock 9
    fi
}

# ---------------------------------------------------------------------------- 1. apt
ensure_packages() {
    local missing=() p st
    [[ $# -gt 0 ]] || set -- "${APT_PACKAGES[@]}"
    for p in "$@"; do
        st="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
        [[ "$st" == installed ]] || missing+=("$p")
    done
    # curl is used for the registry health check.
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing with apt-get: ${missing[*]}"
    local apt_opts=(-o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0)
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update -q
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -q "${missing[@]}"
}

# ---------------------------------------------------------------------------- 2. dockerd
ensure_dockerd() {
    if docker_up; then
        log "dockerd already answering on $SOCK"
        return 0
    fi
    mkdir -p "$STATE/docker" "$STATE/exec"
    if pid_alive "$DOCKERD_PID" dockerd; then
        log "dockerd (pid $(cat "$DOCKERD_PID")) is running but not answering yet; waiting"
    else
        log "starting dockerd (log: $DOCKERD_LOG)"
        # Close fds 3 (caller's stdout: `$(...)` would never finish) and 9 (our lock).
        setsid nohup dockerd \
            --data-root "$STATE/docker" \
            --exec-root "$STATE/exec" \
            --pidfile "$DOCKERD_PID" \
            -H "$DOCKER_HOST_URI" \
            --iptables=false --bridge=none \
            </dev/null >>"$DOCKERD_LOG" 2>&1 3>&- 9>&- &
    fi
    local i
    for ((i = 0; i < 120; i++)); do
        docker_up && { log "dockerd ready after ~$((i / 2)) s"; return 0; }
        sleep 0.5
    done
    tail -n 40 "$DOCKERD_LOG" >&2 || true
    die "dockerd did not answer on $SOCK within 60 s (log above: $DOCKERD_LOG)"
}

# ---------------------------------------------------------------------------- 3. registry
ensure_registry() {
    if registry_up; then
        log "registry already answering on $REGISTRY_ADDR"
        return 0
    fi
    mkdir -p "$STATE/registry"
    local tmp="$REGISTRY_CONFIG.tmp.$$"
    cat >"$tmp" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    mv -f "$tmp" "$REGISTRY_CONFIG"
    if pid_alive "$REGISTRY_PID" docker-registry; then
        log "registry (pid $(cat "$REGISTRY_PID")) is running but not answering yet; waiting"
    else
        log "starting docker-registry on $REGISTRY_ADDR (log: $REGISTRY_LOG)"
        setsid nohup docker-registry serve "$REGISTRY_CONFIG" \
            </dev/null >>"$REGISTRY_LOG" 2>&1 3>&- 9>&- &
        echo "$!" >"$REGISTRY_PID"
    fi
    local i
    for ((i = 0; i < 60; i++)); do
        registry_up && { log "registry ready"; return 0; }
        if ! pid_alive "$REGISTRY_PID" docker-registry; then
            tail -n 20 "$REGISTRY_LOG" >&2 || true
            die "docker-registry exited (port $PORT in use?); log above: $REGISTRY_LOG"
        fi
        sleep 0.5
    done
    tail -n 20 "$REGISTRY_LOG" >&2 || true
    die "registry did not answer on http://$REGISTRY_ADDR/v2/ within 30 s"
}

# ---------------------------------------------------------------------------- 4. base image
# The Debian mirror URI for $BASE_SUITE, from apt's own configuration (deb822 .sources
# files and one-line .list files); never hard-coded.
debian_mirror() {
    if [[ -n "${GRAPHBUILD_DEBIAN_MIRROR:-}" ]]; then
        printf '%s\n' "$GRAPHBUILD_DEBIAN_MIRROR"
        return 0
    fi
    local files=() f uri
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do files+=("$f"); done
    shopt -u nullglob
    if [[ ${#files[@]} -gt 0 ]]; then
        uri="$(awk -v suite="$BASE_SUITE" '
            function flush() {
                if (!found && types ~ /(^| )deb( |$)/ && enabled != "no" && uris != "") {
                    n = split(suites, s, " ")
                    for (i = 1; i <= n; i++) if (s[i] == suite) { split(uris, u, " "); print u[1]; found = 1; break }
                }
                types = ""; uris = ""; suites = ""; enabled = ""
            }
            FNR == 1 { flush() }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                key = tolower($1); sub(/:$/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val); gsub(/[ \t]+/, " ", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = tolower(val)
            }
            END { flush() }' "${files[@]}")"
        [[ -n "$uri" ]] && { printf '%s\n' "$uri"; return 0; }
    fi
    files=()
    [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.list; do files+=("$f"); done
    shopt -u nullglob
    if [[ ${#files[@]} -gt 0 ]]; then
        uri="$(awk -v suite="$BASE_SUITE" '
            /^[ \t]*deb[ \t]/ {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "${files[@]}")"
        [[ -n "$uri" ]] && { printf '%s\n' "$uri"; return 0; }
    fi
    die "no 'deb' source for suite $BASE_SUITE in apt's sources configuration; set GRAPHBUILD_DEBIAN_MIRROR"
}

ROOTFS_TMP=""
cleanup_rootfs() {
    if [[ -n "$ROOTFS_TMP" && -d "$ROOTFS_TMP" ]]; then
        # debootstrap may leave /proc or /sys mounted when it fails.
        local m
        for m in proc/sys/fs/binfmt_misc proc sys dev/pts dev; do
            if mountpoint -q "$ROOTFS_TMP/$m" 2>/dev/null; then umount -l "$ROOTFS_TMP/$m" || true; fi
        done
        rm -rf --one-file-system "$ROOTFS_TMP"
    fi
    rm -f "$BASE_TAR.tmp.$$" "$BASE_SHA.tmp.$$"
}

build_base_tarball() {
    mkdir -p "$BASE_DIR"
    if [[ -s "$BASE_TAR" ]]; then
        log "base tarball cached: $BASE_TAR"
    else
        local mirror
        mirror="$(debian_mirror)"
        ROOTFS_TMP="$(mktemp -d "$BASE_DIR/rootfs.XXXXXX")"
        trap cleanup_rootfs EXIT
        chmod 0755 "$ROOTFS_TMP" # mktemp makes it 0700; it becomes the image's /
        log "debootstrap $BASE_SUITE (minbase + python3, python3-venv) from $mirror (~1 min)"
        local t0=$SECONDS
        if ! debootstrap --variant=minbase --include=python3,python3-venv \
            "$BASE_SUITE" "$ROOTFS_TMP" "$mirror" >"$BASE_DIR/debootstrap.log" 2>&1; then
            tail -n 30 "$BASE_DIR/debootstrap.log" >&2 || true
            [[ -f "$ROOTFS_TMP/debootstrap/debootstrap.log" ]] &&
                tail -n 30 "$ROOTFS_TMP/debootstrap/debootstrap.log" >&2
            die "debootstrap failed (log: $BASE_DIR/debootstrap.log)"
        fi
        log "debootstrap done in $((SECONDS - t0)) s; writing deterministic tarball"
        # Drop run-specific noise (logs, apt caches) so the tree depends less on when it was built.
        rm -rf "$ROOTFS_TMP"/var/cache/apt/*.bin "$ROOTFS_TMP"/var/cache/apt/archives/*.deb \
            "$ROOTFS_TMP"/var/lib/apt/lists/* "$ROOTFS_TMP"/var/cache/ldconfig/aux-cache \
            "$ROOTFS_TMP"/var/cache/debconf/*-old "$ROOTFS_TMP"/var/lib/dpkg/*-old
        find "$ROOTFS_TMP/var/log" -type f -exec truncate -s 0 {} +
        tar -C "$ROOTFS_TMP" --format=gnu --sort=name --mtime=@0 \
            --owner=0 --group=0 --numeric-owner \
            --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
            -cf "$BASE_TAR.tmp.$$" .
        local sum
        sum="$(sha256sum "$BASE_TAR.tmp.$$" | cut -d' ' -f1)"
        printf '%s  %s\n' "$sum" "$(basename "$BASE_TAR")" >"$BASE_SHA.tmp.$$"
        mv -f "$BASE_TAR.tmp.$$" "$BASE_TAR"
        mv -f "$BASE_SHA.tmp.$$" "$BASE_SHA"
        cleanup_rootfs
        ROOTFS_TMP=""
        trap - EXIT
        log "base tarball: $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1), sha256 $sum)"
    fi
    if [[ ! -s "$BASE_SHA" ]]; then
        log "recording sha256 of $BASE_TAR"
        printf '%s  %s\n' "$(sha256sum "$BASE_TAR" | cut -d' ' -f1)" "$(basename "$BASE_TAR")" \
            >"$BASE_SHA.tmp.$$"
        mv -f "$BASE_SHA.tmp.$$" "$BASE_SHA"
    fi
}

ensure_base_image() {
    local sum label
    sum="$(cut -d' ' -f1 <"$BASE_SHA")"
    if label="$(docker_cli image inspect -f '{{ index .Config.Labels "org.graphbuild.base.sha256" }}' \
        "$BASE_IMAGE" 2>/dev/null)"; then
        if [[ "$label" == "$sum" ]]; then
            log "docker image $BASE_IMAGE present"
            return 0
        fi
        log "docker image $BASE_IMAGE is from another tarball ($label); re-importing"
    else
        log "importing $BASE_TAR as docker image $BASE_IMAGE"
    fi
    docker_cli import \
        --change "LABEL org.graphbuild.base.sha256=$sum" \
        --change 'CMD ["/bin/bash"]' \
        "$BASE_TAR" "$BASE_IMAGE" >/dev/null
}

# ---------------------------------------------------------------------------- 5. token-auth registry
token_server_up() { curl -sf -o /dev/null --max-time 2 "http://$TOKEN_SERVER_ADDR/healthz"; }
# The registry answers /v2/ with 401 and a Bearer challenge naming our token service.
token_registry_up() {
    curl -s -o /dev/null -D - --max-time 2 "http://$TOKEN_REGISTRY_ADDR/v2/" 2>/dev/null |
        grep -qi "^www-authenticate: Bearer realm=\"http://$TOKEN_SERVER_ADDR/token\""
}

ensure_token_registry() {
    mkdir -p "$TOKEN_DIR/storage"
    if [[ ! -s "$TOKEN_DIR/cert.pem" || ! -s "$TOKEN_DIR/key.pem" ]]; then
        log "making the token service's signing key and certificate (openssl)"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$TOKEN_ISSUER" \
            -keyout "$TOKEN_DIR/key.pem.tmp" -out "$TOKEN_DIR/cert.pem.tmp" 2>/dev/null
        chmod 0600 "$TOKEN_DIR/key.pem.tmp"
        mv -f "$TOKEN_DIR/key.pem.tmp" "$TOKEN_DIR/key.pem"
        mv -f "$TOKEN_DIR/cert.pem.tmp" "$TOKEN_DIR/cert.pem"
    fi
    # The running service is a copy, so it depends on no checkout; a changed script replaces it.
    if ! cmp -s "$TOKEN_SERVER_SRC" "$TOKEN_DIR/token_server.py"; then
        if pid_alive "$TOKEN_SERVER_PID" python3; then stop_one "$TOKEN_SERVER_PID" python3; fi
        cp "$TOKEN_SERVER_SRC" "$TOKEN_DIR/token_server.py.tmp"
        mv -f "$TOKEN_DIR/token_server.py.tmp" "$TOKEN_DIR/token_server.py"
    fi
    if token_server_up; then
        log "token service already answering on $TOKEN_SERVER_ADDR"
    else
        if pid_alive "$TOKEN_SERVER_PID" python3; then stop_one "$TOKEN_SERVER_PID" python3; fi
        log "starting the token service on $TOKEN_SERVER_ADDR (log: $TOKEN_DIR/token-server.log)"
        setsid nohup /usr/bin/python3 "$TOKEN_DIR/token_server.py" --listen "$TOKEN_SERVER_ADDR" \
            --key "$TOKEN_DIR/key.pem" --cert "$TOKEN_DIR/cert.pem" --users "$TOKEN_DIR/users.json" \
            --issuer "$TOKEN_ISSUER" --service "$TOKEN_SERVICE" \
            </dev/null >>"$TOKEN_DIR/token-server.log" 2>&1 3>&- 9>&- &
        echo "$!" >"$TOKEN_SERVER_PID"
        wait_for token_server_up "$TOKEN_SERVER_PID" python3 "$TOKEN_DIR/token-server.log" "the token service"
    fi
    if token_registry_up; then
        log "token-auth registry already answering on $TOKEN_REGISTRY_ADDR"
    else
        if pid_alive "$TOKEN_REGISTRY_PID" docker-registry; then stop_one "$TOKEN_REGISTRY_PID" docker-registry; fi
        cat >"$TOKEN_DIR/registry-config.yml.tmp" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $TOKEN_DIR/storage
  delete:
    enabled: true
http:
  addr: $TOKEN_REGISTRY_ADDR
auth:
  token:
    realm: http://$TOKEN_SERVER_ADDR/token
    service: $TOKEN_SERVICE
    issuer: $TOKEN_ISSUER
    rootcertbundle: $TOKEN_DIR/cert.pem
EOF
        mv -f "$TOKEN_DIR/registry-config.yml.tmp" "$TOKEN_DIR/registry-config.yml"
        log "starting the token-auth registry on $TOKEN_REGISTRY_ADDR (log: $TOKEN_DIR/registry.log)"
        setsid nohup docker-registry serve "$TOKEN_DIR/registry-config.yml" \
            </dev/null >>"$TOKEN_DIR/registry.log" 2>&1 3>&- 9>&- &
        echo "$!" >"$TOKEN_REGISTRY_PID"
        wait_for token_registry_up "$TOKEN_REGISTRY_PID" docker-registry "$TOKEN_DIR/registry.log" \
            "the token-auth registry"
    fi
}

# wait_for CHECK PIDFILE NAME LOG WHAT: up to 30 s for CHECK to pass while the process lives.
wait_for() {
    local check="$1" pidfile="$2" name="$3" logfile="$4" what="$5" i
    for ((i = 0; i < 60; i++)); do
        "$check" && { log "$what is ready"; return 0; }
        if ! pid_alive "$pidfile" "$name"; then
            tail -n 20 "$logfile" >&2 || true
            die "$what exited (port in use?); log above: $logfile"
        fi
        sleep 0.5
    done
    tail -n 20 "$logfile" >&2 || true
    die "$what did not answer within 30 s; log: $logfile"
}

print_token_exports() {
    printf 'export GRAPHBUILD_TOKEN_REGISTRY=%s\n' "$TOKEN_REGISTRY_ADDR" >&3
    printf 'export GRAPHBUILD_TOKEN_REGISTRY_USERS=%s\n' "$TOKEN_DIR/users.json" >&3
}

# ---------------------------------------------------------------------------- stop
stop_one() {
    local pidfile="$1" name="$2" pid i
    if ! pid_alive "$pidfile" "$name"; then
        log "$name: not running (no live pid in $pidfile)"
        rm -f "$pidfile"
        return 0
    fi
    pid="$(tr -dc '0-9' <"$pidfile")"
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        [[ -d "/proc/$pid" ]] || { rm -f "$pidfile"; return 0; }
        sleep 0.5
    done
    log "$name (pid $pid) still alive after 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

# ---------------------------------------------------------------------------- main
cmd="${1:-up}"
case "$cmd" in
up | start)
    take_lock
    t_start=$SECONDS
    ensure_packages
    ensure_dockerd
    ensure_registry
    build_base_tarball
    ensure_base_image
    log "all services up ($((SECONDS - t_start)) s)"
    print_exports
    ;;
env)
    docker_up || die "dockerd is not answering on $SOCK (run scripts/services.sh)"
    registry_up || die "registry is not answering on $REGISTRY_ADDR (run scripts/services.sh)"
    [[ -s "$BASE_TAR" ]] || die "base tarball $BASE_TAR missing (run scripts/services.sh)"
    print_exports
    ;;
token-registry)
    take_lock
    ensure_packages "${TOKEN_APT_PACKAGES[@]}"
    ensure_token_registry
    print_token_exports
    ;;
stop)
    take_lock
    stop_one "$TOKEN_REGISTRY_PID" docker-registry
    stop_one "$TOKEN_SERVER_PID" python3
    stop_one "$REGISTRY_PID" docker-registry
    stop_one "$DOCKERD_PID" dockerd
    ;;
*)
    die "usage: $0 [up|env|token-registry|stop]"
    ;;
esac

#!/usr/bin/env bash
# A Docker engine on a machine with none running (CI here), and the base image the Dockerfiles name,
# made locally because no image can be pulled.
#
#   containers/local-engine.sh start   install docker.io + debootstrap if missing, start dockerd,
#                                      build the base image once (about 90 s on a fresh machine)
#   containers/local-engine.sh stop    stop that dockerd
#   containers/local-engine.sh env     print the DOCKER_HOST to export
#
# The base image is Debian bookworm (python3, pip, venv) tagged with the name the Dockerfiles use in
# FROM. This machine intercepts HTTPS, so the host's CA certificates go into that local base image
# (with PIP_CERT / SSL_CERT_FILE); the real Dockerfiles never carry them.
set -euo pipefail

STATE=${KFKIT_DOCKER_STATE:-/tmp/kfkit-docker}
SOCK="$STATE/docker.sock"
PIDFILE="$STATE/dockerd.pid"
BASE_IMAGE=${KFKIT_BASE_IMAGE:-python:3.11.10-slim-bookworm}
export DOCKER_HOST="unix://$SOCK"

need() { command -v "$1" >/dev/null 2>&1; }

start() {
  mkdir -p "$STATE"
  if ! need dockerd || ! need debootstrap; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap >/dev/null
  fi
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "dockerd already running (pid $(cat "$PIDFILE"))"
  else
    dockerd --storage-driver=overlay2 --data-root "$STATE/data" --exec-root "$STATE/exec" \
      --pidfile "$PIDFILE" -H "$DOCKER_HOST" >"$STATE/dockerd.log" 2>&1 &
    for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $STATE/dockerd.log" >&2; exit 1; }
  fi
  if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    root="$STATE/rootfs"
    rm -rf "$root"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
      bookworm "$root" >"$STATE/debootstrap.log" 2>&1
    if [ -d /usr/local/share/ca-certificates ]; then
      cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
      chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
    fi
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import \
      --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
      --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
      --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
  fi
  echo "docker engine ready: export DOCKER_HOST=$DOCKER_HOST"
}

stop() {
  if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    rm -f "$PIDFILE"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac

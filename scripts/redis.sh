#!/usr/bin/env bash
# A private redis-server for the tests: `scripts/redis.sh start DIR` installs Debian's
# redis-server if it is missing, starts one on a free loopback port with its files in DIR,
# and prints its URL; `scripts/redis.sh stop DIR` stops it.
set -euo pipefail
cmd=${1:?usage: redis.sh start|stop DIR}
dir=${2:?usage: redis.sh start|stop DIR}
case "$cmd" in
  start)
    if ! command -v redis-server >/dev/null 2>&1; then
      echo "redis.sh: installing redis-server (Debian package)" >&2
      SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
      $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server >&2 ||
        { $SUDO apt-get update >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server >&2; }
    fi
    mkdir -p "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --port "$port" --bind 127.0.0.1 --databases 64 --save '' --appendonly no --daemonize yes \
      --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >&2
    for _ in $(seq 50); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
    redis-cli -p "$port" ping >/dev/null || { echo "redis.sh: redis-server did not start" >&2; cat "$dir/redis.log" >&2; exit 2; }
    echo "redis://127.0.0.1:$port/0"
    ;;
  stop)
    if [ -f "$dir/redis.pid" ]; then kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; fi
    ;;
  *) echo "usage: redis.sh start|stop DIR" >&2; exit 2 ;;
esac

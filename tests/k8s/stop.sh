#!/usr/bin/env bash
# Stops the control plane that start.sh started in DIR (by its pid files) and removes its etcd data.
set -u
DIR=${1:?usage: stop.sh DIR}
for f in kube-apiserver etcd; do
  if [ -f "$DIR/$f.pid" ]; then
    pid=$(cat "$DIR/$f.pid")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    rm -f "$DIR/$f.pid"
  fi
done
rm -rf "$DIR/etcd"

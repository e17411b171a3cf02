#!/usr/bin/env bash
# Starts a throwaway, real Kubernetes control plane on loopback for the tests: etcd and
# kube-apiserver (no controller manager, no scheduler, no kubelet: tests play those parts).
#
#   start.sh DIR      start in DIR (created); prints DIR/env when ready; exit 0
#   stop.sh DIR       stop what start.sh started in DIR (by pid files)
#
# DIR/env (shell syntax) then holds: KUBE_URL, KUBE_CA, KUBE_ADMIN_TOKEN, KUBE_USER_TOKEN,
# KUBECONFIG (admin, group system:masters), KUBECONFIG_USER (the user `tester`, in no group: RBAC
# applies to it), ETCD_PID, APISERVER_PID. Ports are free ones picked at start, so several
# control planes run side by side.
#
# Where the binaries come from, first found wins:
#   1. $KUBEBUILDER_ASSETS/kube-apiserver (and $KUBEBUILDER_ASSETS/etcd if there): the envtest
#      convention, e.g. `setup-envtest use 1.20.2 -p path`;
#   2. ../shared/k8s/bin/kube-apiserver.zst beside the repository, unpacked once into
#      $K8S_BIN_CACHE (default ${TMPDIR:-/tmp}/scalehost-k8s-bin).
# etcd, zstd and openssl not found are installed with apt (root). With $SCALEHOST_K8S_OWNER_PID
# set, the control plane stops by itself once that process is gone (a test binary that exits).
set -euo pipefail
DIR=${1:?usage: start.sh DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SHARED_BIN=$REPO/../shared/k8s/bin

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]; then
  APISERVER=$KUBEBUILDER_ASSETS/kube-apiserver
elif [ -f "$SHARED_BIN/kube-apiserver.zst" ]; then
  APISERVER=
else
  echo "kube-apiserver not found: set KUBEBUILDER_ASSETS to a folder holding kube-apiserver and etcd (envtest: setup-envtest use 1.20.2 -p path)${KUBEBUILDER_ASSETS:+ (it is $KUBEBUILDER_ASSETS, which has no executable kube-apiserver)}" >&2
  exit 3
fi
mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd)

need() { command -v "$1" >/dev/null 2>&1; }
ETCD=
if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  ETCD=$KUBEBUILDER_ASSETS/etcd
fi
missing=()
[ -z "$ETCD" ] && ! need etcd && missing+=(etcd-server)
[ -z "$APISERVER" ] && ! need zstd && missing+=(zstd)
need openssl || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } ||
    { echo "cannot install ${missing[*]}: run 'apt-get install -y ${missing[*]}' as root" >&2; exit 3; }
fi
[ -z "$ETCD" ] && ETCD=$(command -v etcd)

if [ -z "$APISERVER" ]; then
  CACHE=${K8S_BIN_CACHE:-${TMPDIR:-/tmp}/scalehost-k8s-bin}
  mkdir -p "$CACHE"
  APISERVER=$CACHE/kube-apiserver
  if [ ! -x "$APISERVER" ]; then
    zstd -q -d -f "$SHARED_BIN/kube-apiserver.zst" -o "$APISERVER.tmp.$$" &&
      chmod +x "$APISERVER.tmp.$$" && mv -f "$APISERVER.tmp.$$" "$APISERVER"
  fi
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ETCD_PORT=$(free_port); PEER_PORT=$(free_port); API_PORT=$(free_port)

# PKI: a CA, the serving certificate for 127.0.0.1/localhost, the service-account key pair.
P=$DIR/pki; mkdir -p "$P"
(
  cd "$P"; umask 077
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=test-ca" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' > ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile ext -out apiserver.crt 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  chmod 644 ca.crt
)
ADMIN_TOKEN=$(openssl rand -hex 24); USER_TOKEN=$(openssl rand -hex 24)
printf '%s,admin,admin-uid,"system:masters"\n%s,tester,tester-uid\n' "$ADMIN_TOKEN" "$USER_TOKEN" > "$DIR/tokens.csv"
chmod 600 "$DIR/tokens.csv"

mkdir -p "$DIR/logs"
setsid "$ETCD" --name test --data-dir "$DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-cluster "test=http://127.0.0.1:$PEER_PORT" \
  >"$DIR/logs/etcd.log" 2>&1 </dev/null &
ETCD_PID=$!
echo $ETCD_PID > "$DIR/etcd.pid"

setsid "$APISERVER" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" --token-auth-file="$DIR/tokens.csv" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --api-audiences=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range=10.96.0.0/12 --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,ResourceQuota \
  --allow-privileged=true --endpoint-reconciler-type=none --profiling=false \
  --cert-dir="$DIR/pki/generated" \
  >"$DIR/logs/kube-apiserver.log" 2>&1 </dev/null &
APISERVER_PID=$!
echo $APISERVER_PID > "$DIR/kube-apiserver.pid"

if [ -n "${SCALEHOST_K8S_OWNER_PID:-}" ]; then
  # Stops the control plane and removes DIR once its owner (a test binary) is gone, however it
  # ended.
  setsid bash -c 'while kill -0 "$0" 2>/dev/null; do sleep 1; done; "$1" "$2"; rm -rf "$2"' \
    "$SCALEHOST_K8S_OWNER_PID" "$HERE/stop.sh" "$DIR" >/dev/null 2>&1 </dev/null &
fi

URL=https://127.0.0.1:$API_PORT
ready() { [ "$(curl -s --cacert "$P/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$URL/readyz" 2>/dev/null)" = ok ]; }
for _ in $(seq 1 120); do
  ready && break
  kill -0 $APISERVER_PID 2>/dev/null || { echo "kube-apiserver exited; see $DIR/logs/kube-apiserver.log" >&2; exit 1; }
  sleep 0.5
done
ready || { echo "kube-apiserver not ready after 60 s; see $DIR/logs/kube-apiserver.log" >&2; exit 1; }

kubeconfig() {  # file user token
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "$URL", certificate-authority: "$P/ca.crt"}
users:
- name: $2
  user: {token: "$3"}
contexts:
- name: $2@test
  context: {cluster: test, user: $2}
current-context: $2@test
KC
  chmod 600 "$1"
}
kubeconfig "$DIR/kubeconfig" admin "$ADMIN_TOKEN"
kubeconfig "$DIR/kubeconfig-user" tester "$USER_TOKEN"

cat >"$DIR/env" <<ENV
KUBE_URL=$URL
KUBE_CA=$P/ca.crt
KUBE_ADMIN_TOKEN=$ADMIN_TOKEN
KUBE_USER_TOKEN=$USER_TOKEN
KUBECONFIG=$DIR/kubeconfig
KUBECONFIG_USER=$DIR/kubeconfig-user
ETCD_PID=$ETCD_PID
APISERVER_PID=$APISERVER_PID
ENV
echo "$DIR/env"

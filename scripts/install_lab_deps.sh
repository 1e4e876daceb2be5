#!/usr/bin/env bash
# Debian packages the Spark lab (tests/spark, scripts/spark_lab.py) and the evaluation report's browser check
# (tests/report) need; run as root.
# Idempotent: installs only what is missing, changes nothing when all are present.
set -euo pipefail

packages=(
  openssh-server   # a real sshd per lab node
  openssh-client   # ssh, ssh-keygen, ssh-keyscan (spark.ssh on the lab nodes)
  iproute2         # ip netns / ip link / ip -j addr
  iputils-ping     # ping -M do (jumbo path check)
  util-linux       # setsid, unshare, mount (Ray session, per-node mounts)
  procps           # ps (pids of a recorded Ray or vLLM session)
  curl             # the vLLM API check (tests use a stand-in vLLM)
  rsync            # spark.weights copies the model from the head to the other nodes
  netplan.io       # netplan generate validates the rendered netplan file
  chromium         # the evaluation report opened headless (tests/report): no console errors, a screenshot
  fonts-liberation # text for chromium's screenshot (chromium only recommends it; installs run without recommends)
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "lab deps: all present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  # make test still runs everything else; the lab tests skip and say why
  echo "lab deps: missing ${missing[*]}; run as root to install them (the lab tests will be skipped)" >&2
  exit 0
fi

echo "lab deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y --no-install-recommends "${missing[@]}"

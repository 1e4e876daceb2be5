#!/bin/bash
# Boot steps of a nemotron-deploy GPU server, one subcommand per systemd unit. Never prints a secret.
# Source: planner/scripts/nemotron-node.sh, filled by planner/targets/ec2.py.
set -euo pipefail
# Overridable for tests only.
ETC=${NEMOTRON_ETC:-/etc/nemotron}
STATE=${NEMOTRON_STATE:-/var/lib/nemotron}
RUN=${NEMOTRON_RUN:-/run/nemotron}
SYS=${NEMOTRON_SYS:-/sys}
IMDS=${NEMOTRON_IMDS:-http://169.254.169.254/latest}
# shellcheck source=/dev/null
. "$ETC/node.conf"
# The expiry forms of planner/expiry.py, which the reaper and the stack schema accept too.
EXPIRY_FORM='^@EXPIRY_FORM@$'
imds() {
  local token
  token=$(curl -sf -m 5 -X PUT "$IMDS/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') &&
    curl -sf -m 5 -H "X-aws-ec2-metadata-token: $token" "$IMDS/meta-data/$1"
}
log() { echo "nemotron-node: $*" >&2; }
fail() { log "$*"; exit 1; }

# The running array named nemotron, under whatever device it came back (md127, /dev/md/nemotron_0).
our_array() {
  mdadm --detail --scan 2>/dev/null |
    awk '$1 == "ARRAY" && ($2 ~ /\/md\/nemotron(_[0-9]+)?$/ || ($0 " ") ~ / name=([^ ]*:)?nemotron /) {print $2; exit}'
}

cache() {
  local dev disk disks=()
  for _ in $(seq 30); do mountpoint -q "$CACHE_MOUNT" && return 0; sleep 2; done
  dev=$(our_array)
  if [ -z "$dev" ]; then  # after a reboot: assemble from the superblocks, never create over them
    mdadm --assemble --scan >/dev/null 2>&1 || true
    dev=$(our_array)
  fi
  if [ -z "$dev" ]; then
    for disk in "$SYS"/block/nvme*n1; do
      if grep -qs 'Instance Storage' "$disk/device/model"; then disks+=("/dev/${disk##*/}"); fi
    done
    (( ${#disks[@]} > 0 )) || fail "no instance-store NVMe found"
    (( ${#disks[@]} == NVME_DEVICES )) || log "expected $NVME_DEVICES instance-store NVMe, found ${#disks[@]}"
    for disk in "${disks[@]}"; do
      if mdadm --examine "$disk" >/dev/null 2>&1; then
        fail "$disk holds a RAID superblock that did not assemble: not wiping it (mdadm --examine $disk)"
      fi
    done
    mdadm --create /dev/md/nemotron --run --level=0 --raid-devices=${#disks[@]} "${disks[@]}"
    dev=/dev/md/nemotron
    mkfs.xfs -f "$dev"  # only an array created just now
  fi
  mkdir -p "$CACHE_MOUNT" && mount -o noatime "$dev" "$CACHE_MOUNT"
}

prepare() {
  cache
  mkdir -p "$MODEL_CACHE/hf"
  local addr="" iface secret err attempt
  for _ in $(seq 30); do addr=$(imds local-ipv4) && break; sleep 2; done
  [ -n "$addr" ] || fail "no private IP from IMDS after 30 tries"
  iface=$(ip -o -4 addr show | awk -v addr="$addr" '{split($4, a, "/"); if (a[1] == addr) {print $2; exit}}')
  [ -n "$iface" ] || fail "no interface holds $addr"
  printf '%s\n' "VLLM_HOST_IP=$addr" "GLOO_SOCKET_IFNAME=$iface" "TP_SOCKET_IFNAME=$iface" \
    "NCCL_SOCKET_IFNAME=$iface" "UCX_NET_DEVICES=$iface" FI_PROVIDER=efa FI_EFA_USE_DEVICE_RDMA=1 \
    > "$ETC/node.env"
  umask 077
  err=$(mktemp)
  for attempt in $(seq 30); do
    if ! secret=$(aws secretsmanager get-secret-value --region "$REGION" --secret-id "$SECRET_ARN" \
        --query SecretString --output text 2>"$err"); then
      log "secret not readable yet (attempt $attempt): $(grep . "$err" | tail -n 1)"
    elif printf '%s' "$secret" | python3 -c 'import json, sys
try: env = [f"{k}={v}" for k, v in json.load(sys.stdin).items()]
except Exception: sys.exit("nemotron-node: the secret is not a JSON object of variables")
print(*env, sep="\n")' > "$ETC/vllm.env.new"; then
      mv "$ETC/vllm.env.new" "$ETC/vllm.env"
      grep '^HF_TOKEN=' "$ETC/vllm.env" > "$ETC/hf.env" || true  # all the download container gets
      rm -f "$err"
      return 0
    fi
    sleep 10
  done
  rm -f "$err"
  fail "cannot read the stack's secret"
}

stage() {
  local done_marker="$MODEL_CACHE/.staged" pull
  [ -f "$done_marker" ] && return 0
  docker pull --quiet "$IMAGE" & pull=$!
  restore_compile_cache
  case "$WEIGHTS_LOADER" in
    stream) ;;  # vLLM streams the staged copy from S3 into GPU memory: nothing to stage
    nvme)
      aws configure set default.s3.max_concurrent_requests 64
      aws configure set default.s3.multipart_chunksize 64MB
      local snapshot="$MODEL_CACHE/$MIRROR_SNAPSHOT"
      mkdir -p "$snapshot"
      aws s3 sync --only-show-errors --region "$REGION" "$WEIGHTS_S3_URI" "$snapshot"
      verify_weights "$snapshot"
      mkdir -p "${snapshot%/snapshots/*}/refs"
      printf '%s' "$MIRROR_REVISION" > "${snapshot%/snapshots/*}/refs/main" ;;
    *)
      wait "$pull"
      docker run --rm --network host --env-file "$ETC/hf.env" -e HF_HOME=/models/hf \
        -v "$MODEL_CACHE:/models" --entrypoint python3 "$IMAGE" -c @HF_DOWNLOAD@ ;;
  esac
  wait "$pull"
  touch "$done_marker"
}

# Every file of the staged copy against the manifest stage_weights wrote, 16 sha256sum at a time.
verify_weights() {
  local dir=$1 list part pids=() pid bad=0 files
  list=$(mktemp)
  aws s3 cp --only-show-errors --region "$REGION" "${WEIGHTS_S3_URI%/}/$MANIFEST" - | python3 -c '
import json, sys
for f in json.load(sys.stdin)["files"]:
    print(f["sha256"] + "  " + f["path"])' > "$list" || fail "no readable $MANIFEST under $WEIGHTS_S3_URI"
  files=$(grep -c . "$list")
  split -n r/16 -d "$list" "$list."
  for part in "$list".*; do (cd "$dir" && sha256sum --quiet --check "$part") & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid" || bad=1; done
  rm -f "$list" "$list".*
  (( bad == 0 )) || fail "the staged weights differ from $MANIFEST (sha256sum lines above)"
  log "weights verified: $files files match $MANIFEST"
}

# vLLM's compile cache for this (vLLM, weights, layout), saved by an earlier start of the stack; best effort.
restore_compile_cache() {
  [ -n "$COMPILE_CACHE_URI" ] || return 0
  mkdir -p "$MODEL_CACHE/vllm-cache"
  aws s3 sync --only-show-errors --region "$REGION" "$COMPILE_CACHE_URI" "$MODEL_CACHE/vllm-cache" ||
    log "compile cache not restored: vLLM compiles from scratch"
  if [ -n "$(ls -A "$MODEL_CACHE/vllm-cache")" ]; then touch "$MODEL_CACHE/.cache-restored"; fi
}

save_compile_cache() {
  [ -n "$COMPILE_CACHE_URI" ] && [ -d "$MODEL_CACHE/vllm-cache" ] && [ ! -f "$MODEL_CACHE/.cache-restored" ] ||
    return 0
  if aws s3 sync --only-show-errors --region "$REGION" "$MODEL_CACHE/vllm-cache" "$COMPILE_CACHE_URI"; then
    touch "$MODEL_CACHE/.cache-restored" && log "compile cache saved to $COMPILE_CACHE_URI"
  else
    log "compile cache not saved: the next start compiles again"
  fi
}

serve() {
  local efa=()
  if [ -d /dev/infiniband ]; then efa=(--device /dev/infiniband -v /opt/amazon:/opt/amazon:ro); fi
  exec docker run --rm --name nemotron-serve --gpus all --ipc host --network host \
    --ulimit memlock=-1 --ulimit stack=67108864 "${efa[@]}" \
    -v "$MODEL_CACHE:/models" -v "$ETC/container:/etc/nemotron/container:ro" \
    --env-file "$ETC/node.env" --env-file "$ETC/serving.env" --env-file "$ETC/vllm.env" \
    --entrypoint /bin/bash "$IMAGE" /etc/nemotron/container/entry.sh
}

ready() {
  until curl -sf -m 5 -o /dev/null "http://127.0.0.1:$PORT/health"; do
    (( $(cut -d. -f1 /proc/uptime) < STARTUP_BUDGET_S )) ||
      fail "NOT READY: no healthy endpoint ${STARTUP_BUDGET_S}s after boot"
    sleep 15
  done
  mkdir -p "$RUN" && touch "$RUN/ready"  # under /run: gone after a reboot
  echo "READY: $MODEL_REPO on port $PORT, $(cut -d. -f1 /proc/uptime)s after boot"
  save_compile_cache || log "compile cache not saved"  # never fails the ready check
}

# OnFailure= of nemotron-serve: systemd runs it after every crash, and once more when it stops restarting.
serve_failed() {
  local result
  result=$(systemctl show -p Result --value nemotron-serve.service || true)
  if [ "$result" = start-limit-hit ]; then
    echo "NOT SERVING: nemotron-serve crashed $SERVE_START_BURST times and is not restarted (journalctl -u nemotron-serve)"
  else
    echo "nemotron-serve failed ($result); systemd restarts it"
  fi
}

# Epoch seconds of an expiry in an accepted form; fails on other text and on impossible dates.
expiry_s() { [[ $1 =~ $EXPIRY_FORM ]] && date -u -d "$1" +%s 2>/dev/null; }

deadman() {
  local state="$STATE/expires-at" tag value="" deadline=""
  mkdir -p "$STATE"
  tag=$(imds "tags/instance/$EXPIRY_TAG" || true)
  if [ -n "$tag" ]; then
    if deadline=$(expiry_s "$tag"); then
      value=$tag && printf '%s\n' "$tag" > "$state"  # remembered only once it parsed
    else
      log "ignoring the $EXPIRY_TAG tag $(printf %q "$tag"): not a time such as 2026-12-01T18:00:00Z"
    fi
  fi
  if [ -z "$value" ] && [ -s "$state" ]; then  # the last value read stands
    value=$(head -n 1 "$state")
    deadline=$(expiry_s "$value") || { log "ignoring the remembered expiry $(printf %q "$value")"; value=""; }
  fi
  if [ -z "$value" ]; then
    value="$MAX_TTL_HOURS hours after boot"
    deadline=$(( $(date -d "$(uptime -s)" +%s) + MAX_TTL_HOURS * 3600 ))
    log "no readable $EXPIRY_TAG tag: stopping $value"
  fi
  if (( $(date -u +%s) >= deadline )); then
    echo "expired ($value): shutting down, which terminates the instance"
    shutdown -h now
  fi
}

case "${1:-}" in
  prepare | stage | serve | ready | deadman) "$1" ;;
  serve-failed) serve_failed ;;
  *) fail "usage: nemotron-node prepare|stage|serve|ready|deadman|serve-failed" ;;
esac

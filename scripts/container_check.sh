#!/usr/bin/env bash
# Build the agent's image with podman and check that its /health answers: the check a Docker CI
# would make, on a machine with no container registry (docs/runbook.md, "Running with compose").
# scripts/test.sh runs it as root (so CI does); it takes minutes (about 3 GB of packages).
#
#   sudo bash scripts/container_check.sh            # PORT=18000 by default, any free port
#
# Steps: Debian's podman, buildah, runc and debootstrap; a bookworm base image made locally with
# debootstrap (the Dockerfile's BASE); the image built with the host's CA bundle and wheel folder
# mounted (PIP_CERT, PIP_FIND_LINKS: kept out of the image); one container on the host network on
# 127.0.0.1:PORT; GET /health until it answers or the deadline. Containers and the temporary
# root file system are removed on exit, whatever happens; the images are kept for a re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[container]\033[0m %s\n' "$*"; }

PORT=${PORT:-18000}
IMAGE=localhost/patient-advocacy-agent:check
BASE_IMAGE=localhost/debian-base:bookworm
CONTAINER=agent-container-check-$$
DEADLINE_S=${DEADLINE_S:-180}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

[ "$(id -u)" = 0 ] || { echo "run as root (podman, debootstrap)" >&2; exit 1; }
if ss -ltn "sport = :$PORT" | grep -q LISTEN; then
  echo "port $PORT is taken: PORT=<free port> bash $0" >&2
  exit 1
fi

ROOTFS=""
cleanup() {
  podman rm -f "$CONTAINER" >/dev/null 2>&1 || true
  if [ -n "$ROOTFS" ]; then rm -rf "$ROOTFS"; fi
}
trap cleanup EXIT

need=()
for tool in podman buildah runc debootstrap curl; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# podman's defaults fail here: more open files than the hard limit, and crun on hybrid cgroups.
if [ ! -f /etc/containers/containers.conf ]; then
  nofile=$(ulimit -Hn)
  mkdir -p /etc/containers
  cat > /etc/containers/containers.conf <<CONF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
fi

if ! podman image exists "$BASE_IMAGE"; then
  say "base image from Debian's packages (debootstrap, about 30 s)"
  ROOTFS=$(mktemp -d)
  MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  debootstrap --variant=minbase bookworm "$ROOTFS" "${MIRROR:-http://deb.debian.org/debian}" >/dev/null
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$ROOTFS/etc/apt/sources.list.d/"
  fi
  tar -C "$ROOTFS" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$ROOTFS"
  ROOTFS=""
fi

# The CPU torch wheel: the wheel folder named by pip's configuration, if there is one.
build_args=(--build-arg "BASE=$BASE_IMAGE")
mounts=()
if [ -f "$CA_BUNDLE" ]; then
  mounts+=(-v "$CA_BUNDLE:/run/host-ca.crt:ro")
  build_args+=(--build-arg PIP_CERT=/run/host-ca.crt)
fi
WHEELS=$(pip config get global.find-links 2>/dev/null || true)
if [ -n "$WHEELS" ] && [ -d "$WHEELS" ]; then
  mounts+=(-v "$WHEELS:/run/wheels:ro")
  build_args+=(--build-arg PIP_FIND_LINKS=/run/wheels)
  # PyTorch's own index may be out of reach: with the folder's 2.13.0+cpu at hand, PyPI as the
  # index is enough (pip prefers 2.13.0+cpu to PyPI's CUDA 2.13.0, a local version sorts higher).
  TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://pypi.org/simple}
fi
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
fi

say "building $IMAGE (minutes: about a minute per GB of packages)"
started=$(date +%s)
# --format docker: the OCI format has no HEALTHCHECK, and podman would drop the image's own.
# Run what this build produced (its image id), never an older image under the same tag.
IIDFILE=$(mktemp)
podman build --format docker --network host "${mounts[@]}" "${build_args[@]}" --iidfile "$IIDFILE" -t "$IMAGE" .
BUILT=$(cat "$IIDFILE")
rm -f "$IIDFILE"
[ -n "$BUILT" ] || { echo "the build produced no image" >&2; exit 1; }
say "built in $(( $(date +%s) - started )) s"

say "running it on 127.0.0.1:$PORT"
podman run -d --name "$CONTAINER" --network host -e HOST=127.0.0.1 -e PORT="$PORT" "$BUILT" >/dev/null
deadline=$(( $(date +%s) + DEADLINE_S ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  if body=$(curl -fsS --max-time 3 "http://127.0.0.1:$PORT/health" 2>/dev/null); then
    say "/health: $body"
    case "$body" in
      *'"status":"ok"'*|*'"status": "ok"'*)
        # The image's own HEALTHCHECK (what Docker and compose run) passes too.
        podman healthcheck run "$CONTAINER" && say "the image's HEALTHCHECK: healthy" && exit 0
        echo "the image's HEALTHCHECK failed" >&2; exit 1 ;;
      *) echo "/health answered but not ok" >&2; exit 1 ;;
    esac
  fi
  if [ "$(podman inspect -f '{{.State.Running}}' "$CONTAINER")" != true ]; then
    echo "the container stopped:" >&2
    podman logs --tail 30 "$CONTAINER" >&2 || true
    exit 1
  fi
  sleep 2
done
echo "/health did not answer within $DEADLINE_S s:" >&2
podman logs --tail 30 "$CONTAINER" >&2 || true
exit 1

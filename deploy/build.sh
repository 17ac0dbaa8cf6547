#!/usr/bin/env bash
# Build the mmbind image (one image for every role: coordinator, node, runner, simulate).
#
#   deploy/build.sh            where an image registry is reachable: FROM python:3.11-slim,
#                              packages from PyPI (what `docker compose up --build` also does)
#   deploy/build.sh --offline  where none is: a local Debian base made with debootstrap
#                              (python3, venv, redis-server) and a wheelhouse prepared with the
#                              host's pip; the build contacts no index and no registry
#
# --offline prints the variables that make docker-compose use what it built; eval them:
#   eval "$(deploy/build.sh --offline)" && docker-compose up
#
# Caches (reused when present, made from nothing otherwise), outside the repository:
#   $MMBIND_DOCKER_CACHE (default ~/.cache/mmbind-docker)
#     base-<key>.tar      the debootstrapped root file system (key: suite + package list)
#     wheels-<key>/       the wheelhouse (key: constraints.txt + pyproject's dependencies)
# Variables: PYTHON (the host's, with pip; default python3), MMBIND_IMAGE (default mmbind:latest),
#   MMBIND_BASE (override the base image), MMBIND_LOCAL_BASE (the tag of the one --offline
#   makes; default local/mmbind-base:bookworm),
#   DEBIAN_MIRROR (default: the first deb.debian.org-style URI apt uses here).
set -euo pipefail
cd "$(dirname "$0")/.."

offline=0
case "${1:-}" in
  --offline) offline=1 ;;
  "") ;;
  *) echo "usage: deploy/build.sh [--offline]" >&2; exit 2 ;;
esac

image="${MMBIND_IMAGE:-mmbind:latest}"
cache="${MMBIND_DOCKER_CACHE:-$HOME/.cache/mmbind-docker}"
suite=bookworm
base_packages="python3,python3-venv,redis-server"
base_image="${MMBIND_LOCAL_BASE:-local/mmbind-base:$suite}"
mkdir -p "$cache"
python="${PYTHON:-python3}"  # the host Python whose pip prepares the wheelhouse

say() { echo "build.sh: $*" >&2; }
elapsed() { echo "$(($(date +%s) - $1)) s"; }

apt_mirror() {
  # The mirror apt uses on this machine (deb822 sources or a classic sources.list).
  local uri
  uri="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
    2>/dev/null | grep -v security | head -1 | sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//' |
    awk '{print $1}')"
  echo "${uri:-http://deb.debian.org/debian}"
}

make_base() {
  # A Debian root file system with Python 3.11 (the torch cp311 wheel's) and redis-server,
  # imported as $base_image. No registry: debootstrap fetches from the apt mirror.
  if docker image inspect "$base_image" >/dev/null 2>&1; then
    say "base $base_image: present"
    return
  fi
  local key tarball t0
  key="$(echo "$suite $base_packages" | sha256sum | cut -c1-12)"
  tarball="$cache/base-$key.tar"
  t0=$(date +%s)
  if [[ ! -s "$tarball" ]]; then
    command -v debootstrap >/dev/null || {
      say "debootstrap missing: apt-get install -y --no-install-recommends debootstrap"
      exit 1
    }
    local root="$cache/rootfs-$key.partial"
    rm -rf "$root"
    say "debootstrap $suite ($base_packages) from ${DEBIAN_MIRROR:-$(apt_mirror)}"
    debootstrap --variant=minbase --include="$base_packages" "$suite" "$root" \
      "${DEBIAN_MIRROR:-$(apt_mirror)}" >"$cache/debootstrap.log" 2>&1 ||
      { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
    tar -C "$root" -cf "$tarball.partial" . && mv "$tarball.partial" "$tarball"
    rm -rf "$root"
  fi
  docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' "$tarball" "$base_image" >/dev/null
  say "base $base_image: made in $(elapsed "$t0") ($(du -h "$tarball" | cut -f1) tarball)"
}

quiet_pip() {
  # The host's pip, its noise (ignored find-links locations) kept out of the output.
  "$python" -m pip "$@" -q --disable-pip-version-check 2> >(grep -v "^WARNING: Location" >&2)
}

# The build tools, and what bookworm's Python 3.11.2 needs beyond the host's resolution
# (redis requires async-timeout under Python < 3.11.3).
wheel_extras='setuptools>=77 wheel async-timeout>=4.0.3'

make_wheelhouse() {
  # Every wheel the image installs, resolved by the host's pip (its index, its certificates)
  # under constraints.txt, then copied into the build context (deploy/wheels/, git-ignored).
  local reqs key wheels t0
  reqs="$("$python" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))")"
  key="$( (cat constraints.txt; echo "$reqs $wheel_extras"; "$python" -V) | sha256sum | cut -c1-12)"
  wheels="$cache/wheels-$key"
  t0=$(date +%s)
  if [[ ! -f "$wheels/.complete" ]]; then
    rm -rf "$wheels"
    echo "$reqs" >"$cache/requirements-$key.txt"
    # shellcheck disable=SC2086
    quiet_pip wheel -w "$wheels" $wheel_extras
    quiet_pip wheel -w "$wheels" -c constraints.txt -r "$cache/requirements-$key.txt"
    touch "$wheels/.complete"
    say "wheelhouse: made in $(elapsed "$t0") ($(du -sh "$wheels" | cut -f1))"
  else
    say "wheelhouse: present ($(du -sh "$wheels" | cut -f1))"
  fi
  find deploy/wheels -name '*.whl' -delete
  # Hard links when the cache shares a file system with the checkout, else copies.
  cp -l "$wheels"/*.whl deploy/wheels/ 2>/dev/null || cp "$wheels"/*.whl deploy/wheels/
}

t_all=$(date +%s)
if ((offline)); then
  make_base
  make_wheelhouse
  base="${MMBIND_BASE:-$base_image}"
else
  find deploy/wheels -name '*.whl' -delete
  base="${MMBIND_BASE:-python:3.11-slim}"
fi
build_key() {
  # What the image is made of: the Dockerfile, the base image's id and every path the
  # Dockerfile COPYs from the context (read from its COPY lines).
  local srcs
  mapfile -t srcs < <(awk '$1 == "COPY" && $2 !~ /^--/ { for (i = 2; i < NF; i++) print $i }' \
    deploy/Dockerfile)
  {
    echo "$base $(docker image inspect -f '{{.Id}}' "$base" 2>/dev/null || true)"
    cat deploy/Dockerfile .dockerignore
    # wheels by name and size (their names carry the versions; hashing 400 MB takes seconds)
    find "${srcs[@]}" -type f -name '*.whl' -printf '%p %s\n' | sort
    find "${srcs[@]}" -type f ! -name '*.whl' ! -path '*/__pycache__/*' ! -name '*.pyc' \
      ! -name '.*' -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
}

image_size() {
  docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1 / 1e9}'
}

t0=$(date +%s)
key="$(build_key)"
label=org.mmbind.build-key
if [[ "$(docker image inspect -f "{{index .Config.Labels \"$label\"}}" "$image" 2>/dev/null)" == "$key" ]]; then
  # Nothing it is made of changed: skip even the context upload (~400 MB of wheels).
  say "image $image: up to date (build key $key, $(image_size)); total $(elapsed "$t_all")"
else
  say "docker build $image FROM $base"
  docker build --force-rm -f deploy/Dockerfile --build-arg BASE="$base" --label "$label=$key" \
    -t "$image" . >"$cache/build.log" 2>&1 || { tail -30 "$cache/build.log" >&2; exit 1; }
  say "image $image: built in $(elapsed "$t0") ($(image_size)); total $(elapsed "$t_all")"
fi
echo "export MMBIND_IMAGE=$image MMBIND_BASE=$base"
if ((offline)); then
  echo "export MMBIND_REDIS_IMAGE=$base_image"
fi

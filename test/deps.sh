#!/usr/bin/env bash
# Installs the Debian packages the tests need, when missing. Runs as root on
# CI and on a fresh machine; elsewhere it says what to install and the
# tests that need a missing tool skip (outside CI).
set -euo pipefail

# tool -> Debian package
declare -A pkgs=(
  [dig]=dnsutils
  [kdig]=knot-dnsutils
  [knotd]=knot
  [promtool]=prometheus
  [bird]=bird2
  [birdc]=bird2
  [clang-14]=clang-14          # make check-generate (BPF objects)
  [llvm-strip-14]=llvm-14
  [nginx]=nginx                # lbd end-to-end: the L7 proxies
  [curl]=curl
  [ethtool]=ethtool            # tx checksum offload off on veth
  [nft]=nftables               # the DNAT baseline of the dataplane benchmark
  [ip]=iproute2
)

missing=()
for tool in "${!pkgs[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
    missing+=("${pkgs[$tool]}")
  fi
done
# Headers, not commands.
[ -e /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "test/deps.sh: missing packages: ${missing[*]} (run as root to install; tests needing them will skip)" >&2
  exit 0
fi

echo "test/deps.sh: installing ${missing[*]}" >&2
# Keep package scripts from starting daemons on the host (knot would take port 53).
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

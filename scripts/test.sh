#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need, checks lint,
# format and types, then runs the tests.
#   ./scripts/test.sh                everything
#   ./scripts/test.sh -m "not e2e and not netns"
#                                    the fast tier, for the edit loop: no browser, no
#                                    server process, no network namespaces
#   ./scripts/test.sh -k stage       extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: Debian's Chromium for the browser tests, ffmpeg's ffprobe to
# check recordings, iproute2 and nftables to emulate weak links in namespaces,
# coturn for TURN, redis-server for the nodes that share lessons.
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v ffprobe >/dev/null || need+=(ffmpeg)
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
# coturn for the test of a classroom behind a firewall that drops UDP (TURN over TCP).
command -v turnserver >/dev/null || need+=(coturn)
# redis-server for the test of two nodes sharing lessons (tests/signaling/test_cluster.py).
command -v redis-server >/dev/null || need+=(redis-server)
# The pages speak Chinese: without a CJK font the screenshots show boxes.
fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || need+=(fonts-wqy-microhei)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}"
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Python packages, in a virtual environment of the checkout's own.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

.venv/bin/ruff check classroom signaling media tests scripts
.venv/bin/ruff format --check classroom signaling media tests scripts
# Strict, on the packages named in pyproject.toml ([tool.mypy]).
.venv/bin/mypy
.venv/bin/python -m pytest -p no:cacheprovider --durations=15 "$@"

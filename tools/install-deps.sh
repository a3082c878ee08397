#!/bin/sh
# install-deps.sh: installs, with apt-get, everything vdmini builds and tests with on Debian 12.
# CUDA is optional and not installed here: configure finds it at /usr/local/cuda when present.
set -eu
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run as root (or with sudo)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
    build-essential autoconf automake pkg-config \
    libopenblas-dev libjansson-dev \
    libavcodec-dev libavformat-dev libavutil-dev libswscale-dev \
    libmicrohttpd-dev libyaml-dev libsqlite3-dev python3-pytest \
    libcmocka-dev python3 python3-numpy python3-torch \
    chromium systemd
# Node.js and npm run the browser test; a machine that already has them (from Debian or from
# another repository, whose nodejs package conflicts with Debian's npm) keeps its own.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt-get install -y -q --no-install-recommends nodejs npm
fi

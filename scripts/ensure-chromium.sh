#!/usr/bin/env bash
# Make sure headless Chromium (the browser test of `deepeyes view`'s page) is installed:
# Debian's `chromium` with apt-get when we can, otherwise say how. Never fails the build:
# without it the browser test skips with its reason (and fails in CI, where apt works).
set -u
for name in chromium chromium-browser google-chrome; do
  command -v "$name" >/dev/null 2>&1 && exit 0
done
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
  fi
  if [ "$SUDO" != "none" ]; then
    echo "installing chromium (browser test of the trajectory page) with apt-get ..."
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
      { $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null 2>&1 && \
        $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium >/dev/null 2>&1; }
    command -v chromium >/dev/null 2>&1 && exit 0
  fi
fi
echo "warning: chromium is not installed and could not be installed automatically." >&2
echo "hint: install it with your package manager (Debian/Ubuntu: sudo apt-get install chromium);" >&2
echo "      the browser test of 'deepeyes view' skips without it." >&2
exit 0

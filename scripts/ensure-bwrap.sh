#!/usr/bin/env bash
# Make sure bubblewrap (the code sandbox's isolation) is installed: apt-get when we can,
# otherwise say how. Never fails the build: without bwrap the sandbox refuses to start
# (unless a recipe says sandbox.isolation: none) and its tests say why they skip.
set -u
if command -v bwrap >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
  fi
  if [ "$SUDO" != "none" ]; then
    echo "installing bubblewrap (code sandbox isolation) with apt-get ..."
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q bubblewrap >/dev/null 2>&1 || \
      { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q bubblewrap >/dev/null 2>&1; }
    command -v bwrap >/dev/null 2>&1 && exit 0
  fi
fi
echo "warning: bubblewrap is not installed and could not be installed automatically." >&2
echo "hint: install it with your package manager (Debian/Ubuntu: sudo apt-get install bubblewrap;" >&2
echo "      Fedora: sudo dnf install bubblewrap; Arch: sudo pacman -S bubblewrap)." >&2
exit 0

#!/usr/bin/env bash
# The first run, on a fresh Debian bookworm: debootstrap a minimal root into a temp folder,
# clone this repository into it (committed files only, as a user's clone), bind-mount the
# Rust toolchain (rustup's host may be unreachable; nothing else of this machine is shared),
# then run the README's two commands inside as root:
#   1. scripts/run.sh   until GET /healthz answers 200, then stopped;
#   2. scripts/test.sh  (skipped with --run-only).
# Reports the Debian packages each command installed and how long it took.
# Needs root, debootstrap and a Debian mirror (http://deb.debian.org/debian or $MIRROR).
#
#   scripts/check-fresh-machine.sh [--run-only] [--keep]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_only=0 keep=0
for a in "$@"; do
  case "$a" in
    --run-only) run_only=1 ;;
    --keep) keep=1 ;;
    *) echo "check-fresh-machine: unknown option $a" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "check-fresh-machine: run as root (debootstrap, chroot, mounts)" >&2; exit 2; }
source "$here/scripts/lib/apt.sh"
command -v debootstrap >/dev/null || apt_install check-fresh-machine debootstrap
mirror="${MIRROR:-http://deb.debian.org/debian}"
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
[ -d "$rustup_home" ] && [ -x "$cargo_bin/cargo" ] || { echo "check-fresh-machine: no rustup toolchain at $rustup_home" >&2; exit 2; }

root="$(mktemp -d /var/tmp/earshot-fresh.XXXXXX)"
chmod 755 "$root" # a real root is world-readable: services that drop root (postgres, _apt) need it
mounts=()
cleanup() {
  set +e
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null; done
  if [ "$keep" = 1 ]; then
    echo "check-fresh-machine: kept $root and its logs ($root.*.log)"
  else
    rm -rf --one-file-system "$root"
    rm -f "$root".pk* "$root".run.log "$root".test.log "$root".debootstrap.log
  fi
}
trap cleanup EXIT
bind() { mkdir -p "$root$2"; mount --bind "$1" "$root$2"; mounts+=("$root$2"); [ "${3:-}" = ro ] && mount -o remount,bind,ro "$root$2"; return 0; }

t0=$(date +%s)
echo "check-fresh-machine: debootstrap bookworm (minbase) into $root" >&2
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 \
  || { tail -20 "$root.debootstrap.log" >&2; exit 1; }
rm -f "$root.debootstrap.log"
t1=$(date +%s)
cp /etc/resolv.conf "$root/etc/resolv.conf"
# What the Debian installer writes and debootstrap does not: without /etc/hosts "localhost"
# goes to DNS, and ChromeDriver cannot reach the browser it started ("unable to connect to
# renderer"), which is how the first run of this check failed.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
# A network that inspects TLS (a company proxy, this project's sandbox) signs with its own
# CA: that CA belongs to the network, not to the box, so it is handed on. ca-certificates,
# once the README's command installs it, takes it in.
mkdir -p "$root/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
# A booted box also has /dev/shm mounted, which `mount --bind /dev` leaves out.
bind /proc /proc; bind /sys /sys; bind /dev /dev; bind /dev/pts /dev/pts; bind /dev/shm /dev/shm
bind "$rustup_home" /opt/rustup ro
bind "$cargo_bin" /opt/cargo-bin ro
git clone -q "$here" "$root/src/earshot"
[ -d "$here/../shared" ] && bind "$here/../shared" /src/shared ro

inside() { # run a command in the fresh root as a new user would: root, a clean environment
  chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo RUSTUP_TOOLCHAIN="$(rustup show active-toolchain 2>/dev/null | cut -d' ' -f1)" \
    PATH=/opt/cargo-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "cd /src/earshot && $1"
}
packages() { chroot "$root" dpkg-query -W -f '${Package}\n' | sort; }

packages >"$root.pk0"
echo "check-fresh-machine: scripts/run.sh (until /healthz answers)" >&2
t2=$(date +%s)
inside "scripts/run.sh serve --listen 127.0.0.1:18931" >"$root.run.log" 2>&1 &
server_pid=$!
ok=0
while kill -0 "$server_pid" 2>/dev/null; do
  if curl -fsS -m 2 http://127.0.0.1:18931/healthz >/dev/null 2>&1; then ok=1; break; fi
  sleep 2
done
t3=$(date +%s)
pkill -TERM -f "earshot serve --listen 127.0.0.1:18931" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=""
packages >"$root.pk1"
if [ "$ok" != 1 ]; then
  echo "check-fresh-machine: FAILED: scripts/run.sh never answered /healthz; its last lines:" >&2
  tail -30 "$root.run.log" >&2
  exit 1
fi
report() { comm -13 "$1" "$2" | tr '\n' ' '; }
echo "== debootstrap: $((t1 - t0)) s"
echo "== scripts/run.sh: /healthz answered after $((t3 - t2)) s; installed: $(report "$root.pk0" "$root.pk1")"
if [ "$run_only" = 0 ]; then
  echo "check-fresh-machine: scripts/test.sh" >&2
  t4=$(date +%s)
  if ! inside "CI=true scripts/test.sh" >"$root.test.log" 2>&1; then
    echo "check-fresh-machine: FAILED: scripts/test.sh; its last lines:" >&2
    tail -40 "$root.test.log" >&2
    exit 1
  fi
  t5=$(date +%s)
  packages >"$root.pk2"
  echo "== scripts/test.sh: passed in $((t5 - t4)) s; installed: $(report "$root.pk1" "$root.pk2")"
  grep -E "^test result|passed|failed" "$root.test.log" | tail -12
fi
rm -f "$root".pk* "$root".run.log "$root".test.log
echo "check-fresh-machine: OK"

#!/usr/bin/env bash
# The CPU container image, built and run here as a user would (issue #37), with podman (no
# docker daemon; no image registry reachable, so the bases are made locally):
#   1. the bases: a debootstrapped Debian bookworm imported as the runtime base, and the same
#      plus build tools and this machine's Rust toolchain as the build base (rustup's host may
#      be unreachable); kept between runs (--rebuild-bases makes them again);
#   2. `podman build` of ./Dockerfile with BASE_IMAGE and BUILD_IMAGE pointing at them;
#   3. the image run with a models volume and a data volume: a fixture transcribed over HTTP,
#      its HEALTHCHECK run until healthy, the container restarted, the job and its audio
#      checked to have survived.
# Prints the time of each step and the image's size. Needs root, debootstrap and a Debian
# mirror (http://deb.debian.org/debian or $MIRROR), and the models in ./models
# (scripts/fetch-model.sh base-q8_0; scripts/fetch-model.sh silero-vad).
#   scripts/check-image.sh [--rebuild-bases] [--keep] [--cuda]
#
# --cuda: the GPU image (Dockerfile.cuda) instead, as far as a machine without a GPU goes. Its
# bases are the two above plus Debian's CUDA 11.8 from non-free (the toolkit, about 3 GB, for
# the build; libcudart and libcublas to run), and it is built for one GPU generation
# ($CMAKE_CUDA_ARCHITECTURES, default 90: H100/H200). Checked: the image builds; the binary's
# libraries all resolve but libcuda, which the host's driver brings; with the toolkit's stub
# libcuda (a driver with no GPU) the image refuses to start (EARSHOT_REQUIRE_GPU=true, its
# default), and with EARSHOT_REQUIRE_GPU=false it serves on the CPU and runs the steps above.
# Not checked: anything on a GPU (no driver, no NVIDIA Container Toolkit here).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
rebuild=0 keep=0 cuda=0
for a in "$@"; do
  case "$a" in
    --rebuild-bases) rebuild=1 ;;
    --keep) keep=1 ;;
    --cuda) cuda=1 ;;
    *) echo "check-image: unknown option $a" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "check-image: run as root (debootstrap, podman)" >&2; exit 2; }
source scripts/lib/apt.sh
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
apt_install check-image "${need[@]}"
for m in base-q8_0 silero-vad; do
  [ -f "models/ggml-$m.bin" ] || scripts/fetch-model.sh "$m"
done
mirror="${MIRROR:-http://deb.debian.org/debian}"
toolchain="$(rustc --print sysroot)"

work="$(mktemp -d /var/tmp/earshot-image.XXXXXX)"
name="earshot-check-$$"
# Debian's podman, as it works on these machines: runc (crun fails on hybrid cgroups),
# cgroupfs, and no default ulimits.
cat >"$work/containers.conf" <<'CONF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
CONF
export CONTAINERS_CONF="$work/containers.conf"
pm() { podman --runtime runc "$@"; }
cleanup() {
  set +e
  pm rm -f "$name" >/dev/null 2>&1
  if [ "$keep" = 1 ]; then echo "check-image: kept $work"; else rm -rf --one-file-system "$work"; fi
}
trap cleanup EXIT
step_start=$(date +%s)
step() { local now; now=$(date +%s); echo "== $1: $((now - step_start)) s"; step_start=$now; }

base=localhost/earshot-base:bookworm
build=localhost/earshot-build:bookworm
if [ "$rebuild" = 1 ] || ! pm image exists "$base"; then
  debootstrap --variant=minbase bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$work/root/var/cache/apt/archives/"*.deb
  # A network that inspects TLS (a company proxy, this project's sandbox) signs with its own
  # CA: it belongs to the network, not to the box, so the local bases carry it (ca-certificates
  # takes it in when the images install it). An image built from the public bases does not.
  mkdir -p "$work/root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$work/root/usr/local/share/ca-certificates/" 2>/dev/null || true
  tar -C "$work/root" -c . | pm import --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
  rm -rf --one-file-system "$work/root"
  step "runtime base (debootstrap bookworm minbase)"
fi
if [ "$rebuild" = 1 ] || ! pm image exists "$build"; then
  mkdir -p "$work/build-base"
  cp -a "$toolchain" "$work/build-base/rust"
  cat >"$work/build-base/Containerfile" <<CF
FROM $base
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      build-essential ca-certificates curl git \\
 && rm -rf /var/lib/apt/lists/*
COPY rust /usr/local/rust
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    CARGO_HOME=/usr/local/cargo
CF
  pm build --network host -t "$build" "$work/build-base" >"$work/build-base.log" 2>&1 \
    || { tail -30 "$work/build-base.log" >&2; exit 1; }
  rm -rf --one-file-system "$work/build-base"
  step "build base (the runtime base, build tools, Rust $(rustc --version | cut -d' ' -f2))"
fi

image=localhost/earshot:check
dockerfile=Dockerfile
image_args=()
run_args=()
if [ "$cuda" = 1 ]; then
  # Debian's CUDA is in non-free; the bases above list main only.
  nonfree="sed -i 's/ main\$/ main contrib non-free/' /etc/apt/sources.list"
  cuda_layer() { # FROM, packages, tag
    mkdir -p "$work/cuda-base"
    printf 'FROM %s\nRUN %s \\\n && apt-get update \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends %s \\\n && rm -rf /var/lib/apt/lists/*\n' \
      "$1" "$nonfree" "$2" >"$work/cuda-base/Containerfile"
    pm build --network host -t "$3" "$work/cuda-base" >"$work/cuda-base.log" 2>&1 \
      || { tail -30 "$work/cuda-base.log" >&2; exit 1; }
  }
  if [ "$rebuild" = 1 ] || ! pm image exists "$build-cuda"; then
    cuda_layer "$build" nvidia-cuda-toolkit "$build-cuda"
    step "CUDA build base (the build base, nvidia-cuda-toolkit)"
  fi
  if [ "$rebuild" = 1 ] || ! pm image exists "$base-cuda"; then
    cuda_layer "$base" "libcudart11.0 libcublas11 libcublaslt11" "$base-cuda"
    step "CUDA runtime base (the runtime base, libcudart and libcublas)"
  fi
  build="$build-cuda" base="$base-cuda" image=localhost/earshot:check-cuda dockerfile=Dockerfile.cuda
  image_args=(--build-arg CMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-90}")
  # No GPU here: the toolkit's stub stands in for the driver's libcuda (it answers that there
  # is no device), and the model is the small one in the models volume.
  pm run --rm -v "$work:/out" "$build" sh -c \
    'cp "$(find / -xdev -path "*stubs*" -name libcuda.so | head -n 1)" /out/libcuda.so.1'
  run_args=(-v "$work/libcuda.so.1:/usr/lib/x86_64-linux-gnu/libcuda.so.1:ro" -e EARSHOT_MODEL=base-q8_0)
fi

# The image, as the Dockerfile says, from these bases. The crates come from crates.io.
pm build --format docker --network host -f "$dockerfile" --build-arg BASE_IMAGE="$base" \
  --build-arg BUILD_IMAGE="$build" "${image_args[@]}" -t "$image" . >"$work/image.log" 2>&1 \
  || { tail -40 "$work/image.log" >&2; exit 1; }
step "image build ($dockerfile)"
size=$(pm image inspect "$image" --format '{{.Size}}')
echo "== image size: $((size / 1024 / 1024)) MiB"
if [ "$cuda" = 1 ]; then
  pm run --rm --entrypoint ldd "$image" /usr/local/bin/earshot >"$work/ldd" 2>>"$work/podman.log"
  unresolved=$(grep 'not found' "$work/ldd" || true)
  echo "== libraries not in the image: ${unresolved:-none}"
  grep -q 'libcudart.*=> /' "$work/ldd" \
    || { echo "check-image: the binary is not linked against libcudart" >&2; exit 1; }
  [ "$(echo "$unresolved" | grep -vc 'libcuda\.so\.1')" = 0 ] \
    || { echo "check-image: libraries missing from the image: $unresolved" >&2; exit 1; }
fi

# Run it: the models volume holds the two models (the entry point would fetch them when
# missing); the data volume starts empty.
mkdir -p "$work/models" "$work/data"
cp models/ggml-base-q8_0.bin models/ggml-silero-vad.bin "$work/models/"
chown -R 10001:10001 "$work/models" "$work/data"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run() {
  pm run -d --name "$name" --network host -e EARSHOT_LISTEN="127.0.0.1:$port" \
    -v "$work/models:/models" -v "$work/data:/data" "${run_args[@]}" "$image" >/dev/null \
    2>>"$work/podman.log"
}
wait_ready() {
  for _ in $(seq 1 240); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    [ "$(pm inspect "$name" --format '{{.State.Running}}')" = true ] || break
    sleep 0.5
  done
  pm logs "$name" 2>&1 | tail -30 >&2
  echo "check-image: the container did not become ready" >&2
  exit 1
}
if [ "$cuda" = 1 ]; then
  # Without a usable GPU the GPU image refuses to start, and says why.
  run
  for _ in $(seq 1 120); do
    [ "$(pm inspect "$name" --format '{{.State.Running}}')" = true ] || break
    sleep 0.5
  done
  refused=$(pm logs "$name" 2>&1 | grep -m1 'require-gpu is set but' || true)
  [ -n "$refused" ] || { pm logs "$name" 2>&1 | tail -20 >&2; echo "check-image: the GPU image started without a GPU" >&2; exit 1; }
  echo "== without a GPU: $refused"
  pm rm -f "$name" >/dev/null 2>>"$work/podman.log"
  step "refused to start without a GPU"
  run_args+=(-e EARSHOT_REQUIRE_GPU=false)
fi
run
wait_ready
step "container start (ready)"
# The start-up line names the CPU features in use; on a CPU with AVX-512 VNNI the portable
# image chooses its AVX-512 kernels at run time.
startup=$(pm logs "$name" 2>&1 | grep -m1 -o 'backend=.*cpu_features=.*' || true)
echo "== start-up: $startup"
[ -n "$startup" ] || { echo "check-image: no start-up line naming the CPU features" >&2; exit 1; }
if grep -qw avx512_vnni /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo; then
  case "$startup" in
    *"AVX512_VNNI (chosen at run time)"*) ;;
    *) echo "check-image: this CPU has AVX-512 VNNI, and the image does not use it" >&2; exit 1 ;;
  esac
fi
answer=$(curl -fsS -F file=@tests/fixtures/telegram_ru.oga -F language=ru \
  "http://127.0.0.1:$port/v1/audio/transcriptions" -D "$work/headers")
echo "== transcribed: $answer"
case "$answer" in *"барышни"*) ;; *) echo "check-image: unexpected text" >&2; exit 1 ;; esac
job=$(sed -n 's/^x-earshot-job-id: *//Ip' "$work/headers" | tr -d '\r')
[ -n "$job" ] || { echo "check-image: no job id" >&2; exit 1; }
# HEALTHCHECK: podman schedules it with systemd timers, which a box without systemd lacks (it
# says so in podman.log); its command is run here as the timer would, and turns the state
# healthy.
healthy=""
for _ in $(seq 1 30); do
  pm healthcheck run "$name" >/dev/null 2>&1 || true
  healthy=$(pm inspect "$name" --format '{{.State.Health.Status}}' 2>/dev/null || true)
  [ "$healthy" = healthy ] && break
  sleep 1
done
[ "$healthy" = healthy ] || { echo "check-image: the health check says '$healthy'" >&2; exit 1; }
step "transcribed a note, healthy"
# Restarted, the job and its audio are still there.
pm restart "$name" >/dev/null 2>>"$work/podman.log"
wait_ready
state=$(curl -fsS "http://127.0.0.1:$port/v1/jobs/$job" | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])')
[ "$state" = done ] || { echo "check-image: job $job is '$state' after the restart" >&2; exit 1; }
curl -fsS "http://127.0.0.1:$port/v1/jobs/$job/audio" -o "$work/audio"
cmp -s "$work/audio" tests/fixtures/telegram_ru.oga \
  || { echo "check-image: the audio did not survive the restart" >&2; exit 1; }
step "restarted: the job and its audio survived"
echo "check-image: passed"

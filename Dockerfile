# earshot, CPU image.
#   docker build -t earshot .
#   docker run -d -p 8000:8000 -v "$PWD/models:/models" -v "$PWD/data:/data" earshot
# The model is fetched into /models at the first start when missing (EARSHOT_MODEL, default
# base-q8_0). For a box without internet, copy ggml-*.bin into ./models first.

# The bases, replaceable where no registry is reachable (scripts/check-image.sh builds both
# from a debootstrapped bookworm): a Debian bookworm with the Rust toolchain, and a bare one.
ARG BUILD_IMAGE=rust:1-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

# ---- build --------------------------------------------------------------------------------
FROM ${BUILD_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# A portable image: ggml is built for x86-64-v3 (AVX2/FMA/F16C, any x86 server CPU since
# 2013), and earshot's AVX-512 kernels (the q8_0 tiles, tinyBLAS) are compiled apart and used
# where the CPU running the image has AVX-512 VNNI (vendor/whisper-rs-sys/EARSHOT.md). The
# start-up line names what was chosen. --build-arg GGML_NATIVE=ON compiles for the build
# machine's CPU instead, and ties the image to that kind of CPU.
ARG GGML_NATIVE=OFF
ENV GGML_NATIVE=${GGML_NATIVE}
RUN cargo build --release --locked \
 && install -D target/release/earshot /out/earshot

# ---- runtime ------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
# curl: HEALTHCHECK and the model script; python3-numpy: the model script's converter fallback.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl python3 python3-numpy python3-pip \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin earshot \
 && mkdir -p /models /data && chown earshot:earshot /models /data
COPY --from=build /out/earshot /usr/local/bin/earshot
COPY scripts/fetch-model.sh scripts/ct2_to_ggml.py scripts/silero_to_ggml.py scripts/docker-entrypoint.sh /opt/earshot/scripts/
COPY models/SHA256SUMS models/README.md /opt/earshot/models/
USER earshot
ENV EARSHOT_LISTEN=0.0.0.0:8000 EARSHOT_DATA_DIR=/data EARSHOT_MODELS_DIR=/models EARSHOT_MODEL=base-q8_0
VOLUME ["/models", "/data"]
EXPOSE 8000
# The port of EARSHOT_LISTEN, whatever it is set to.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${EARSHOT_LISTEN##*:}/readyz" >/dev/null || exit 1
ENTRYPOINT ["/opt/earshot/scripts/docker-entrypoint.sh"]
CMD ["serve"]

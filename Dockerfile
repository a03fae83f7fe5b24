# syntax=docker/dockerfile:1
# zbot's container image: a build stage with Rust, a slim runtime with what deploy recipes need.
#   docker build -t zbot .
#   docker run --rm -it zbot zbot shell                      # the example, offline
#   docker run -d -v "$PWD/bot.toml:/var/lib/zbot/bot.toml:ro" -e GITHUB_TOKEN … -p 8080:8080 zbot
# Secrets come from the environment at run time (bot.toml reads "${NAME}"); none is baked in.

# The Rust of Cargo.toml's rust-version (a test holds them together): a rebuild gets the same compiler.
FROM rust:1.88-slim-bookworm AS build
WORKDIR /src
# Only what the build reads: never the operator's .env, keys or data that may sit in the checkout.
COPY Cargo.toml Cargo.lock bot.toml ./
COPY src src
COPY migrations migrations
COPY commands commands
COPY examples/adxstat examples/adxstat
# The registry, git dependencies and the build directory are BuildKit caches: a rebuild after a change to src/ compiles
# zbot alone, not its dependencies. The cache is not in the image, so the binary is copied out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin zbot \
    && cp target/release/zbot /usr/local/bin/zbot

FROM debian:bookworm-slim
# git and ssh for checkouts, CA certificates for https, Python with Fabric 1 (fab-classic) for the
# stock fabric recipe, tini as PID 1 (it forwards signals and reaps every orphan in the container).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client ca-certificates python3 python3-venv tini \
    && rm -rf /var/lib/apt/lists/*
COPY tests/requirements.txt /opt/fabric/requirements.txt
RUN python3 -m venv /opt/fabric \
    && /opt/fabric/bin/pip install --no-cache-dir --disable-pip-version-check \
       "$(grep '^fab-classic==' /opt/fabric/requirements.txt)"
ENV PATH=/opt/fabric/bin:$PATH \
    ZBOT_CONFIG=/var/lib/zbot/bot.toml
COPY --from=build /usr/local/bin/zbot /usr/local/bin/zbot
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/zbot zbot \
    && mkdir -p /var/lib/zbot/data \
    && chown zbot:zbot /var/lib/zbot/data
USER 10001:10001
WORKDIR /var/lib/zbot
# The store, caches, working trees and logs: relative to bot.toml, data_dir "data" is this.
VOLUME ["/var/lib/zbot/data"]
# bot.toml's [webhook] listen must be "0.0.0.0:8080" in a container, also when polling only
# ([webhook] receive = false): the health check below asks port 8080 inside the container. A
# listener on another port needs this line changed (or `healthcheck:` in compose).
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["zbot", "run", "--json-logs"]

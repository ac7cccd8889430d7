# bindery's container image: `docker build -t bindery .` from the repository root.
# Two stages: a Rust toolchain builds the release binary, a slim Debian runs it.

# Pinned to the toolchain the project is developed with (Cargo.toml: rust-version 1.89,
# edition 2024). Bookworm on both sides, so the binary's glibc matches the runtime's.
FROM rust:1.95-bookworm AS builder
WORKDIR /build

# Dependency cache: build every dependency against stub sources first. This layer is
# reused as long as Cargo.toml and Cargo.lock do not change, so editing src/ rebuilds
# only bindery itself. The stubs are an empty library, an empty main, and an empty
# benchmark (Cargo.toml names benches/osb.rs, so it must exist for cargo to start).
# The workspace's other member (the Kubernetes controller, controller/Dockerfile) must exist
# for cargo to read the workspace; a stub of it is enough, it is not built here.
COPY Cargo.toml Cargo.lock ./
COPY controller/Cargo.toml ./controller/Cargo.toml
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && mkdir -p benches && echo 'fn main() {}' > benches/osb.rs \
    && mkdir -p controller/src && echo 'fn main() {}' > controller/src/main.rs \
    && touch controller/src/lib.rs \
    && cargo build --release --locked --bin bindery \
    && rm -rf src

# The real sources. migrations/ is needed at compile time too: sqlx::migrate! embeds it.
COPY src ./src
COPY migrations ./migrations
# COPY keeps the files' own modification times, which can be older than the stub build;
# touching them makes cargo rebuild the crate instead of reusing the stub's output.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin bindery

FROM debian:bookworm-slim
# ca-certificates lets an operator's TLS trust settings work. bindery itself links no
# system TLS library (rustls), and its HEALTHCHECK is bindery itself (no curl).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 bindery \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin bindery \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/bindery

COPY --from=builder /build/target/release/bindery /usr/local/bin/bindery
# The default catalog; Kubernetes mounts its ConfigMap over this file.
COPY catalog.yaml /etc/bindery/catalog.yaml
# The binary embeds the migrations; the folder is shipped so operators can read them.
COPY migrations /usr/share/bindery/migrations

# Without DATABASE_URL, state goes to a SQLite file in the data directory: fine for a
# trial (`docker run -v bindery-data:/var/lib/bindery …`); production sets DATABASE_URL
# to PostgreSQL, as deploy/ does.
VOLUME /var/lib/bindery
ENV BINDERY_DATA_DIR=/var/lib/bindery \
    BINDERY_CATALOG=/etc/bindery/catalog.yaml \
    BINDERY_LISTEN=0.0.0.0:8080 \
    BINDERY_LOG_FORMAT=json
EXPOSE 8080

# /healthz (liveness), not /readyz: an orchestrator that restarts unhealthy containers
# should not restart every replica while the state database is briefly unreachable.
# `bindery healthcheck` reads the same configuration as `serve`, so it follows
# BINDERY_LISTEN and speaks TLS when BINDERY_TLS_* are set (Kubernetes uses its own probes).
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/bindery", "healthcheck"]

# Numeric, not a name: Kubernetes' runAsNonRoot can only verify a numeric user.
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/bindery"]
CMD ["serve"]

# syntax=docker/dockerfile:1
# The siemflow image: `docker build -t siemflow:0.1.0 .` (no Docker here? scripts/image.sh
# builds the same image without an engine, from the same assemble script and the same
# settings, which it reads from this file's last stage).
#
# Build stage: the release binary (thin LTO, line tables dropped), then the image's whole
# file system laid out by deploy/image/assemble-rootfs.sh: the binary stripped, the
# shared libraries it links (glibc, libgcc_s, zlib from Debian 12), the CA bundle, the
# siemflow user (65532) and the default pipeline.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin siemflow \
    && deploy/image/assemble-rootfs.sh target/release/siemflow pipeline.toml /rootfs

# Runtime: nothing but that file system (no shell, no package manager).
FROM scratch
COPY --from=build /rootfs/ /
# COPY makes every file root's; data_dir belongs to the user siemflow runs as.
COPY --from=build --chown=65532:65532 /rootfs/var/lib/ /var/lib/
USER 65532:65532
WORKDIR /var/lib/siemflow
ENV SIEMFLOW_API=0.0.0.0:8686
EXPOSE 8686/tcp
VOLUME ["/var/lib/siemflow"]
ENTRYPOINT ["/usr/local/bin/siemflow"]
CMD ["run", "--config", "/etc/siemflow/pipeline.toml"]

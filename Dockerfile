# The minimal cme-exec image: the static binary, a CA bundle, a non-root user, nothing else.
# It packages binaries built outside (the goreleaser / cargo-dist pattern) and downloads nothing:
#
#   scripts/dist x86_64-unknown-linux-musl aarch64-unknown-linux-musl
#   buildah bud --platform linux/amd64 -t cme-exec .        # or: docker build .
#
# scripts/dist puts each binary at dist/linux/ARCH/cme-exec (ARCH as in TARGETPLATFORM) and the
# build machine's CA bundle at dist/ca-certificates.crt. For the init-container pattern
# (docs/kubernetes.md): `render --output` into an in-memory emptyDir.
#
# The config is expected at /etc/cme-exec/cme-exec.toml (CME_EXEC_CONFIG, as in Dockerfile.cme):
# mount it there read-only. A path named by CME_EXEC_CONFIG is the user's explicit choice and
# needs no trust record (docs/security.md).
#
# The image with cme inside is Dockerfile.cme.
FROM scratch

# Set by the builder from --platform (docker buildx, buildah bud).
ARG TARGETPLATFORM

COPY docker/passwd docker/group /etc/
COPY dist/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY dist/${TARGETPLATFORM}/cme-exec /cme-exec

ENV CME_EXEC_CONFIG=/etc/cme-exec/cme-exec.toml
USER 65532:65532
ENTRYPOINT ["/cme-exec"]
CMD ["--help"]

# Velero's image for the node tests (issue 23, item 5), assembled without Docker by
# hack/image/oci.py as `make image` assembles ours: the `velero` binary hack/velero/build.sh makes,
# with the libraries it maps, on the part of distroless cc-debian12 that oci.py stands in for.
# Velero's own image (its Dockerfile at v1.18.3) puts the binary at /velero on a different base;
# `velero install`'s DaemonSet runs `/velero node-agent server` as root, so the base matters only
# for what the binary loads.
FROM scratch AS builder

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder --chown=0:0 --chmod=0755 /velero /velero
USER 65532:65532
ENTRYPOINT ["/velero"]

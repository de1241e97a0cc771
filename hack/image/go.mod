// Tools module for the image without Docker: go-containerregistry's OCI layout reader (the
// library crane and ko are built on) and containerd's importer (the code `ctr images import`
// runs) check the archive that hack/image/build.sh assembles. Nothing here is linked into the
// product.
module github.com/node-agent-webhook/node-agent-webhook/hack/image

go 1.26.6

require (
	github.com/containerd/containerd/v2 v2.4.2
	github.com/containerd/errdefs v1.0.0
	github.com/containerd/log v0.2.0
	github.com/containerd/platforms v1.0.0-rc.5
	github.com/distribution/reference v0.6.0
	github.com/google/go-containerregistry v0.22.1
	github.com/opencontainers/image-spec v1.1.1
)

require (
	github.com/containerd/containerd/api v1.12.0 // indirect
	github.com/containerd/typeurl/v2 v2.3.0 // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/klauspost/compress v1.20.0 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/sirupsen/logrus v1.10.2 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

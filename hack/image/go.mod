// Tools module for the image without Docker: a reader of OCI image layouts from
// go-containerregistry (the library crane and ko are built on) checks the archive that
// hack/image/build.sh assembles. Nothing here is linked into the product.
module github.com/node-agent-webhook/node-agent-webhook/hack/image

go 1.26.0

require github.com/google/go-containerregistry v0.22.1

require (
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	golang.org/x/sync v0.22.0 // indirect
)

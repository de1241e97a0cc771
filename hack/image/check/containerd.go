package main

import (
	"context"
	_ "crypto/sha256" // digests: the daemon registers it, a library user must
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	tarchive "github.com/containerd/containerd/v2/core/transfer/archive"
	"github.com/containerd/containerd/v2/core/transfer/image"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// imported imports the archive with containerd's own import code, as `ctr images import` runs
// it inside containerd (core/transfer/local: the archive importer, the walk that marks the
// index's manifests, the image store that names them), into a content store in a temporary
// directory; no daemon runs. It fails unless the import succeeds, the image is named as
// containerd's CRI resolves ref (distribution/reference's ParseDockerRef: node-agent-webhook:latest
// is docker.io/library/node-agent-webhook:latest; under any other name the kubelet would not
// find it and would try to pull it), its content is complete, and containerd resolves a
// linux/amd64 manifest and config from it. The names come from the transfer service's image
// store with the prefix ctr gives when --base-name is not set.
func imported(archive, ref string) (map[string]any, error) {
	normalized, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, err
	}
	want := normalized.String()
	ctx := context.Background()
	// The local store warns that this file system has no fs-verity; that is no finding here.
	if err := log.SetLevel("error"); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "containerd-content-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	store, err := local.NewStore(dir)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	index, err := tarchive.NewImageImportStream(f, "").Import(ctx, store)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	manifests, err := marked(ctx, store, index)
	if err != nil {
		return nil, err
	}
	// ctr images import without --base-name: prefix import-<date>, which a full name overrides.
	is := image.NewStore("", image.WithNamedPrefix("import-"+time.Now().Format("2006-01-02"), true))
	named := &memoryImages{}
	for _, desc := range manifests {
		if _, err := is.Store(ctx, desc, named); err != nil && !errdefs.IsNotFound(err) {
			return nil, err
		}
	}
	if len(named.images) != 1 || named.images[0].Name != want {
		return nil, fmt.Errorf("containerd names %v, want [%s]", names(named.images), want)
	}
	img := named.images[0]
	linux := platforms.Only(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	available, _, _, missing, err := images.Check(ctx, store, img.Target, linux)
	if err != nil || !available {
		return nil, fmt.Errorf("content incomplete (missing %v): %v", missing, err)
	}
	manifest, err := images.Manifest(ctx, store, img.Target, linux)
	if err != nil {
		return nil, err
	}
	raw, err := content.ReadBlob(ctx, store, manifest.Config)
	if err != nil {
		return nil, err
	}
	var config ocispec.Image
	if err := json.Unmarshal(raw, &config); err != nil {
		return nil, err
	}
	return map[string]any{
		"name":       img.Name,
		"target":     img.Target.Digest.String(),
		"layers":     len(manifest.Layers),
		"user":       config.Config.User,
		"entrypoint": config.Config.Entrypoint,
	}, nil
}

// marked walks the imported index as containerd's import does: each manifest the index lists,
// annotated so that the image store names it from its own annotations.
func marked(ctx context.Context, store content.Store, index ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	raw, err := content.ReadBlob(ctx, store, index)
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, err
	}
	for i := range idx.Manifests {
		if idx.Manifests[i].Annotations == nil {
			idx.Manifests[i].Annotations = map[string]string{}
		}
		idx.Manifests[i].Annotations["io.containerd.import.ref-source"] = "annotation"
	}
	return idx.Manifests, nil
}

// memoryImages is a test double of containerd's image metadata store (a bolt database in the
// daemon): it keeps what the transfer image store creates, to read the names back.
type memoryImages struct{ images []images.Image }

func (m *memoryImages) Create(_ context.Context, img images.Image) (images.Image, error) {
	m.images = append(m.images, img)
	return img, nil
}

func (m *memoryImages) Get(context.Context, string) (images.Image, error) {
	return images.Image{}, errdefs.ErrNotFound
}

func (m *memoryImages) List(context.Context, ...string) ([]images.Image, error) {
	return m.images, nil
}

func (m *memoryImages) Update(_ context.Context, img images.Image, _ ...string) (images.Image, error) {
	return img, nil
}

func (m *memoryImages) Delete(context.Context, string, ...images.DeleteOpt) error { return nil }

func names(imgs []images.Image) []string {
	out := make([]string, len(imgs))
	for i, img := range imgs {
		out[i] = img.Name
	}
	return out
}

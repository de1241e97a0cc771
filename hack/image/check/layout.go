package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// readLayout reads the OCI image layout in dir the way go-containerregistry's clients (crane, ko)
// read one, and fails unless every blob matches its descriptor: the index, the manifest, the
// config, and each layer's digest, size and uncompressed diff ID against the config. It then
// flattens the layers as a runtime does and describes what the image runs, so the summary
// comes from the reader, not from the script that wrote the archive.
func readLayout(dir, ref string) (map[string]any, error) {
	index, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	if err := validate.Index(index); err != nil {
		return nil, err
	}
	manifest, err := index.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(manifest.Manifests) != 1 {
		return nil, fmt.Errorf("%d manifests in index.json, want 1", len(manifest.Manifests))
	}
	desc := manifest.Manifests[0]
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != ref {
		return nil, fmt.Errorf("ref name %q, want %q", got, ref)
	}
	image, err := index.Image(desc.Digest)
	if err != nil {
		return nil, err
	}
	config, err := image.ConfigFile()
	if err != nil {
		return nil, err
	}
	entrypoint, err := flattened(image, config.Config.Entrypoint)
	if err != nil {
		return nil, err
	}
	layers, err := image.Layers()
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"digest":     desc.Digest.String(),
		"ref":        ref,
		"layers":     len(layers),
		"user":       config.Config.User,
		"entrypoint": config.Config.Entrypoint,
		"cmd":        config.Config.Cmd,
		"ports":      config.Config.ExposedPorts,
		"binary":     entrypoint,
	}, nil
}

// flattened finds the entrypoint in the image's flattened filesystem (later layers over
// earlier ones, whiteouts applied) and describes it; an entrypoint that is missing or not
// executable is an error.
func flattened(image v1.Image, entrypoint []string) (string, error) {
	if len(entrypoint) == 0 {
		return "", errors.New("no entrypoint")
	}
	want := strings.TrimPrefix(entrypoint[0], "/")
	rc := mutate.Extract(image)
	defer rc.Close()
	files := tar.NewReader(rc)
	for {
		header, err := files.Next()
		if err == io.EOF {
			return "", fmt.Errorf("%s is not in the image", entrypoint[0])
		}
		if err != nil {
			return "", err
		}
		if strings.TrimPrefix(header.Name, "/") != want {
			continue
		}
		if header.Typeflag != tar.TypeReg || header.Mode&0o111 == 0 {
			return "", fmt.Errorf("%s: type %c mode %o, want an executable file", header.Name, header.Typeflag, header.Mode)
		}
		return fmt.Sprintf("%s %d bytes mode %o owner %d:%d", header.Name, header.Size, header.Mode, header.Uid, header.Gid), nil
	}
}

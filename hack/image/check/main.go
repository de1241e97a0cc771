// Command check reads an image archive as two of its consumers do, and fails on anything
// either refuses: go-containerregistry's OCI layout reader (the library crane and ko are
// built on), given the archive unpacked, and containerd's importer, given the archive.
//
//	check <archive> <archive unpacked> <image reference>
//
// It prints what each read: one JSON object with both summaries.
package main

import (
	"encoding/json"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: check <archive> <archive unpacked> <image reference>")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintln(os.Stderr, "check:", err)
		os.Exit(1)
	}
}

func run(archive, dir, ref string) error {
	ggcr, err := readLayout(dir, ref)
	if err != nil {
		return fmt.Errorf("go-containerregistry: %w", err)
	}
	ctrd, err := imported(archive, ref)
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	out, err := json.Marshal(map[string]any{"go-containerregistry": ggcr, "containerd": ctrd})
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}

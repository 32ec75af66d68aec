package units

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Generate renders every valid pool among files into outDir, systemd's
// generator normal-dir, and returns what it could not do: problems that
// kept a pool out (skipped) and problems that may stop a generated pool
// from starting (warnings). A broken pool never stops the others from
// being generated. Generate returns an error only when it could not write
// into outDir.
func Generate(files []string, outDir string, cpus int, h Host) (skipped, warnings Errors, err error) {
	pools, skipped := LoadAll(files, h)
	for _, p := range pools {
		warnings = append(warnings, h.Check(p)...)
		for _, f := range Render(p, cpus) {
			if werr := WriteFile(outDir, f); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}
	return skipped, warnings, err
}

// WriteFile writes f into dir, a generator directory: a file, or a
// symlink when f.Link is set; an existing link is left as it is.
func WriteFile(dir string, f File) error {
	dst := filepath.Join(dir, f.Name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("units: write %s: %w", dst, err)
	}
	if f.Link != "" {
		if err := os.Symlink(f.Link, dst); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("units: link %s: %w", dst, err)
		}
		return nil
	}
	if err := os.WriteFile(dst, f.Data, 0o644); err != nil {
		return fmt.Errorf("units: write %s: %w", dst, err)
	}
	return nil
}

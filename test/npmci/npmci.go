// Package npmci installs the npm packages a test or benchmark pins in a
// package.json and its package-lock.json, with `npm ci`, once per lock
// file: into a directory named after the lock file's hash.
package npmci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// CacheDir is name in the user's cache directory.
func CacheDir(name string) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for npm ci (%w)", err)
	}
	return filepath.Join(dir, name), nil
}

// Install runs npm ci for packageJSON and packageLock in base/HASH,
// unless an earlier run finished there, and returns that directory; its
// node_modules holds the packages. what names them in messages.
func Install(ctx context.Context, base, what string, packageJSON, packageLock []byte) (string, error) {
	sum := sha256.Sum256(packageLock)
	dir := filepath.Join(base, hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(filepath.Join(dir, "installed")); err == nil {
		return dir, nil
	}
	fmt.Fprintf(os.Stderr, "npm ci (%s) in %s...\n", what, dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for f, data := range map[string][]byte{"package.json": packageJSON, "package-lock.json": packageLock} {
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			return "", err
		}
	}
	c, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci (%s) in %s: %w (make deps installs npm): %s", what, dir, err, out)
	}
	return dir, os.WriteFile(filepath.Join(dir, "installed"), nil, 0o644)
}

// Package state keeps small durable checkpoints: JSON files written atomically (temp file,
// fsync, rename, fsync of the directory), so a reader sees the old or the new file, never half.
//
// state.go owns Save and Load. Functions are safe for concurrent use on different paths; two
// writers of the same path race only in which one wins, never in what a reader sees.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/backfill/backfill/internal/fsync"
)

// ErrNotFound is returned by Load when the checkpoint file does not exist.
var ErrNotFound = errors.New("state: no checkpoint")

// Save writes v as JSON to path atomically and durably.
func Save(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode checkpoint %s: %w", path, err)
	}
	data = append(data, '\n')
	// 0600, as the temporary file it is renamed from always was.
	if err := fsync.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}
	return nil
}

// Load reads the JSON checkpoint at path into v; ErrNotFound when there is none.
func Load(path string, v any) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("read checkpoint %s: %w", path, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode checkpoint %s: %w", path, err)
	}
	return nil
}

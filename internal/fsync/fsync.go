// Package fsync makes changes to a directory durable.
package fsync

import (
	"fmt"
	"os"
)

// Dir fsyncs a directory, so that a rename, a new file or a removal in it survives a power loss.
func Dir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Package ctxtime holds the one timing helper the fetch and load stages share.
package ctxtime

import (
	"context"
	"time"
)

// Sleep waits for d, or until ctx is done (its error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

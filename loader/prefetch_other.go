//go:build !linux

package loader

import "github.com/backfill/backfill/spool"

// prefetch does nothing where there is no posix_fadvise.
func prefetch([]spool.SegmentInfo) {}

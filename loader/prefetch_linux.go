package loader

import (
	"os"

	"github.com/backfill/backfill/spool"
	"golang.org/x/sys/unix"
)

// prefetch asks the kernel to read segs' files into the page cache in the background, so that a
// spool on disk is read while the unit before is decoded rather than when its own reading
// starts. Best effort: a file that does not open is left to the reader to report.
func prefetch(segs []spool.SegmentInfo) {
	for _, s := range segs {
		f, err := os.Open(s.Path)
		if err != nil {
			continue
		}
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_WILLNEED)
		f.Close()
	}
}

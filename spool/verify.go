package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Verify checks every segment in dir without the index: every checksum, seqs strictly increasing
// within and across segments, one relay, file names, and each trailer against the contents; the
// open segment is checked as a tail whose torn end is tolerated. It calls report (if not nil)
// once per segment with nil or the fault found, and returns the number of faults; err is for
// failures to run at all (an unreadable directory, a cancelled ctx).
func Verify(ctx context.Context, dir string, report func(SegmentInfo, error)) (faults int, err error) {
	if _, err := os.Stat(dir); err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	segDir := filepath.Join(dir, segmentsDir)
	l, err := listDir(segDir)
	if err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	dec, err := newDecoder()
	if err != nil {
		return 0, err
	}
	defer dec.Close()

	v := verifier{report: report}
	for _, name := range l.odd {
		path := filepath.Join(segDir, name)
		v.done(SegmentInfo{Name: name, Path: path}, fmt.Errorf("%w: %s: malformed segment file name", ErrCorrupt, path))
	}
	sealed := make(map[string]bool, len(l.sealed))
	for _, name := range l.sealed {
		if err := ctx.Err(); err != nil {
			return v.faults, fmt.Errorf("verify: %w", err)
		}
		sealed[name] = true
		info, err := verifySealed(filepath.Join(segDir, name), dec)
		v.done(info, v.follow(info, err))
	}
	for _, name := range l.open {
		if err := ctx.Err(); err != nil {
			return v.faults, fmt.Errorf("verify: %w", err)
		}
		path := filepath.Join(segDir, name)
		info, err := verifyOpen(path, dec)
		if errors.Is(err, fs.ErrNotExist) { // a writer sealed it since the listing
			name = strings.TrimSuffix(name, openExt) + sealedExt
			if sealed[name] {
				continue
			}
			info, err = verifySealed(filepath.Join(segDir, name), dec)
		}
		if err == nil && len(l.open) > 1 {
			err = fmt.Errorf("%w: %s: one of %d open segments", ErrCorrupt, path, len(l.open))
		}
		v.done(info, v.follow(info, err))
	}
	return v.faults, nil
}

// verifier carries what Verify checks across segments.
type verifier struct {
	report   func(SegmentInfo, error)
	faults   int
	relay    string
	prevName string
	prevLast int64
}

func (v *verifier) done(info SegmentInfo, err error) {
	if err != nil {
		v.faults++
	}
	if v.report != nil {
		v.report(info, err)
	}
}

// follow checks that the segment continues the ones before it: same relay, higher seqs.
func (v *verifier) follow(info SegmentInfo, err error) error {
	if info.Relay != "" {
		if v.relay == "" {
			v.relay = info.Relay
		} else if info.Relay != v.relay && err == nil {
			err = fmt.Errorf("segment %s has relay %q, earlier segments %q: %w", info.Path, info.Relay, v.relay, ErrRelayMismatch)
		}
	}
	if info.Count > 0 {
		if info.FirstSeq <= v.prevLast && err == nil {
			err = corruptf(info.Path, 12, "first seq %d not above last seq %d of %s", info.FirstSeq, v.prevLast, v.prevName)
		}
		v.prevLast = max(v.prevLast, info.LastSeq)
		v.prevName = info.Name
	}
	return err
}

// verifySealed reads a sealed segment to the end, which checks every chunk and the trailer.
func verifySealed(path string, dec *zstd.Decoder) (SegmentInfo, error) {
	info := SegmentInfo{Name: filepath.Base(path), Path: path}
	r, err := openSegment(path, dec)
	if err != nil {
		return info, err
	}
	defer r.Close()
	info = r.Info()
	if err := checkName(path, r.hdr); err != nil {
		return info, err
	}
	for {
		if _, err := r.Next(); err == io.EOF {
			return info, nil
		} else if err != nil {
			return info, err
		}
	}
}

// verifyOpen scans an open segment read-only; a torn tail is not a fault.
func verifyOpen(path string, dec *zstd.Decoder) (SegmentInfo, error) {
	info := SegmentInfo{Name: filepath.Base(path), Path: path}
	f, err := os.Open(path)
	if err != nil {
		return info, fmt.Errorf("verify open segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return info, fmt.Errorf("verify open segment: %w", err)
	}
	info.FileBytes = st.Size()
	sc, err := scanOpen(f, st.Size(), path, dec)
	info.setStats(sc.hdr, sc.st)
	if err != nil {
		return info, err
	}
	return info, checkName(path, sc.hdr)
}

package loader

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backfill/backfill/spool"
)

func TestTmpMem(t *testing.T) {
	if os.Getenv("TMPTRACE") == "" {
		t.Skip()
	}
	evs := benchEvents(400_000)
	dir := t.TempDir()
	writeSpool(t, dir, evs)
	fmt.Println("segments", len(mustList(t, dir)))
	evs = nil
	runtime.GC()
	url := testDB(t)
	l := openLoader(t, Config{DatabaseURL: url, Workers: 2})
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	st := time.Now()
	sum, err := l.Run(context.Background(), dir, nil)
	close(stop)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("took", time.Since(st), "tx", sum.Transactions, "peak heap MiB", peak.Load()>>20)
}

func mustList(t *testing.T, dir string) []spool.SegmentInfo {
	segs, err := spool.ListSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

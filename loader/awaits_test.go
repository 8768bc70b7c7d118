package loader

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/backfill/backfill/decode"
	"github.com/jackc/pgx/v5"
)

// TestAwaits: a load that stopped after leaving out rows that later deletes remove refuses to
// resume with a narrower window or fewer collections, and fails when its spool ends before
// those deletes; resumed from the whole spool with the same settings, it ends where one load
// would.
func TestAwaits(t *testing.T) {
	t.Parallel()
	// Segments 1-10, 11-20, 21-30; the like and the post made at 2 are deleted at 25.
	var evs []tEvent
	for seq := int64(1); seq <= 30; seq++ {
		switch seq {
		case 2:
			evs = append(evs, commitEv(seq, carol, op("create", nsLike, "gone", post(bob, "p1")), postOp("create", "gone", "soon deleted")))
		case 25:
			evs = append(evs, commitEv(seq, carol, op("delete", nsLike, "gone", ""), postOp("delete", "gone", "")))
		default:
			evs = append(evs, commitEv(seq, bob, postOp("create", "p"+strings.Repeat("x", int(seq)), "kept")))
		}
	}
	full, short := t.TempDir(), t.TempDir()
	writeSpool(t, full, evs, 9, 19)
	writeSpool(t, short, evs[:20], 9) // the same first two segments, without the third
	m := newModel()
	m.applyAll(evs)
	want := m.dump()

	url := testDB(t)
	c := dbConn(t, url)
	cfg := Config{DatabaseURL: url, BatchSize: 1}
	l := openLoader(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	l.beforeCommit = func(context.Context, *pgx.Conn) error {
		if calls.Add(1) == 2 {
			cancel() // the second unit does not commit
		}
		return nil
	}
	if _, err := l.Run(ctx, full, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want context.Canceled", err)
	}
	l.Close()
	if got := query(t, c, `SELECT seq::text || ' ' || awaits_seq::text FROM backfill_loader`); len(got) != 1 || got[0] != "10 25" {
		t.Fatalf("backfill_loader seq, awaits_seq = %v, want [10 25]", got)
	}
	if got := query(t, c, `SELECT count(*)::text FROM posts WHERE uri LIKE '%/gone'`); got[0] != "0" {
		t.Fatalf("the post deleted at 25 was written: %v", got)
	}

	for _, tc := range []struct {
		name string
		cfg  Config
		dir  string
		want string
	}{
		{"an earlier --until", Config{DatabaseURL: url, BatchSize: 1, Until: at(20)}, full, "--until"},
		{"fewer collections", Config{DatabaseURL: url, BatchSize: 1, Collections: []decode.Collection{decode.CollectionPost}}, full, "--collections"},
		{"a spool that ends before the deletes", cfg, short, "await events up to seq 25"},
	} {
		l := openLoader(t, tc.cfg)
		_, err := l.Run(context.Background(), tc.dir, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: run error = %v, want one naming %q", tc.name, err, tc.want)
		}
		l.Close()
	}
	// The short spool loaded its second segment before failing; the whole one finishes.
	load(t, cfg, full)
	if d := diffDumps(dumpDB(t, c), want); d != "" {
		t.Errorf("database differs from the sequential model:\n%s", d)
	}
}

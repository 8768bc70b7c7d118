package main

import (
	"fmt"
	"testing"

	"github.com/backfill/backfill/relaytest"
)

func startRelay(t testing.TB, cfg relaytest.Config) *relaytest.Relay {
	t.Helper()
	r, err := relaytest.New(cfg)
	if err != nil {
		t.Fatalf("start test relay: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// backfill runs the command line in-process and returns its exit code.
func backfill(t testing.TB, args ...string) int {
	t.Helper()
	t.Logf("backfill %v", args)
	level := "warn"
	if testing.Verbose() {
		level = "info"
	}
	return run(append(args, "--progress", "none", "--log-level", level))
}

func TestRunEndToEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     relaytest.Config
		workers int
	}{
		{"plain", relaytest.Config{Seed: 101, Users: 40, Events: 3000}, 4},
		{"bad input and collisions", relaytest.Config{Seed: 102, Users: 15, Events: 3000, BadInput: true, Collisions: true, Inclusive: true}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := startRelay(t, tc.cfg)
			dsn := newDatabase(t)
			dir := t.TempDir()
			code := backfill(t, "run", "--relay-url", r.URL(), "--spool", dir, "--days", "-1",
				"--database-url", dsn, "--segment-size", "131072", "--idle-timeout", "1s",
				"--workers", fmt.Sprint(tc.workers))
			if code != 0 {
				t.Fatalf("exit code %d", code)
			}
			log := r.Log()
			compareModel(t, dumpDB(t, dsn), r.Model(log[0].Seq, r.Head()))
		})
	}
}

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backfill/backfill/relaytest"
)

// TestMultiMachineRecipe follows README's recipe: fetch near the relay, copy the spool to
// another machine, reindex, verify, load there; then status reports it all loaded.
func TestMultiMachineRecipe(t *testing.T) {
	t.Parallel()
	r := startRelay(t, relaytest.Config{Seed: 401, Users: 20, Events: 2500, BadInput: true})
	src := t.TempDir()
	if code := backfill(t, "fetch", "--relay-url", r.URL(), "--spool", src, "--days", "-1", "--idle-timeout", "1s", "--segment-size", "150000"); code != 0 {
		t.Fatalf("fetch exit code %d", code)
	}
	// "rsync" the segment files only: the index is a cache that the other side rebuilds.
	dst := t.TempDir()
	if out, err := exec.Command("cp", "-r", filepath.Join(src, "segments"), dst).CombinedOutput(); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	for _, args := range [][]string{{"spool", "reindex", "--spool", dst}, {"spool", "verify", "--spool", dst}, {"spool", "ls", "--spool", dst}} {
		out, err := exec.Command(binary(t), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("backfill %v: %v\n%s", args, err, out)
		}
		if args[1] == "reindex" && !strings.Contains(string(out), "reindexed") {
			t.Fatalf("reindex said: %s", out)
		}
	}
	dsn := newDatabase(t)
	if code := backfill(t, "load", "--spool", dst, "--database-url", dsn); code != 0 {
		t.Fatalf("load exit code %d", code)
	}
	compareModel(t, dumpDB(t, dsn), r.Model(0, r.Head()))

	out, err := exec.Command(binary(t), "status", "--spool", dst, "--database-url", dsn, "--json").Output()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var st statusReport
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if st.Spool.Segments == 0 || st.Spool.Unloaded != 0 || st.Database == nil || len(st.Database.Cursors) != 1 ||
		st.Database.Cursors[0].Service != "backfill" || int64(st.Database.SegmentsLoaded) != int64(st.Spool.Segments) ||
		len(st.Database.Marks) != 1 || st.Database.Marks[0].Awaits != 0 {
		t.Fatalf("status does not show a fully loaded spool:\n%s", out)
	}

	// A damaged copy fails verify loudly, naming the file.
	segs, _ := filepath.Glob(filepath.Join(dst, "segments", "*.seg"))
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(segs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	vout, err := exec.Command(binary(t), "spool", "verify", "--spool", dst).CombinedOutput()
	if err == nil || !strings.Contains(string(vout), filepath.Base(segs[0])) {
		t.Fatalf("verify of a damaged segment: err %v\n%s", err, vout)
	}
}

// TestDatabaseURLErrors checks the messages a person sees for a missing or unreachable database.
func TestDatabaseURLErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "segments"), 0o755)
	cmd := exec.Command(binary(t), "load", "--spool", dir)
	cmd.Env = append(os.Environ(), "DATABASE_URL=")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--database-url (or DATABASE_URL) is required") {
		t.Fatalf("no database URL: err %v\n%s", err, out)
	}
	out, err = exec.Command(binary(t), "load", "--spool", dir, "--database-url", "postgres://bob:s3cret@127.0.0.1:1/appview?connect_timeout=2").CombinedOutput()
	if err == nil || strings.Contains(string(out), "s3cret") || !strings.Contains(string(out), "127.0.0.1") {
		t.Fatalf("unreachable database: err %v\n%s", err, out)
	}
}

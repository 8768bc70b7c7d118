package main

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/backfill/backfill/relaytest"
	"github.com/backfill/backfill/spool"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the command binary built for the run (27 MB a run in the temporary
// directory otherwise).
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// binary builds the backfill command once per test run.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "backfill-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "backfill")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("go build: %s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build backfill: %v", buildErr)
	}
	return binPath
}

// startProc starts the binary with args; its output goes to the returned buffer.
func startProc(t testing.TB, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(binary(t), append(args, "--progress", "log", "--log-level", "info")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// spoolRecords reads every sealed segment of dir.
func spoolRecords(t testing.TB, dir string) (seqs []int64, frames [][]byte) {
	t.Helper()
	segs, err := spool.ListSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		r, err := spool.OpenSegment(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("read %s: %v", s.Name, err)
			}
			seqs = append(seqs, rec.Seq)
			frames = append(frames, bytes.Clone(rec.Frame))
		}
		r.Close()
	}
	return seqs, frames
}

// TestFetchCrash kills a real `backfill fetch` with SIGKILL at random moments and restarts it:
// the spool must end up holding every frame the relay sent, exactly once, in seq order.
func TestFetchCrash(t *testing.T) {
	t.Parallel()
	r := startRelay(t, relaytest.Config{Seed: 201, Users: 30, Events: 6000, Gaps: true})
	dir := t.TempDir()
	args := []string{"fetch", "--relay-url", r.URL(), "--spool", dir, "--days", "-1", "--idle-timeout", "2s",
		"--segment-size", "200000", "--max-fetch-bytes-per-sec", "4000000"}
	rng := rand.New(rand.NewPCG(7, 7))
	kills := 0
	for i := 0; i < 8; i++ {
		cmd, out := startProc(t, args...)
		time.Sleep(time.Duration(100+rng.IntN(900)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == -1 {
			kills++
		} else if err != nil {
			t.Fatalf("fetch run %d failed before the kill: %v\n%s", i, err, out)
		}
	}
	if kills == 0 {
		t.Fatal("no run was killed mid-fetch; the test proves nothing")
	}
	cmd, out := startProc(t, args...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final fetch: %v\n%s", err, out)
	}
	seqs, frames := spoolRecords(t, dir)
	var want []relaytest.Frame
	for _, f := range r.Log() {
		if f.Kind != relaytest.KindInfo {
			want = append(want, f)
		}
	}
	if len(seqs) != len(want) {
		t.Fatalf("spool holds %d frames after %d kills, want %d", len(seqs), kills, len(want))
	}
	for i := range want {
		if seqs[i] != want[i].Seq || !bytes.Equal(frames[i], want[i].Bytes) {
			t.Fatalf("frame %d: seq %d, want %d (or bytes differ)", i, seqs[i], want[i].Seq)
		}
	}
	vcmd := exec.Command(binary(t), "spool", "verify", "--spool", dir)
	if vout, err := vcmd.CombinedOutput(); err != nil {
		t.Fatalf("spool verify: %v\n%s", err, vout)
	}
	t.Logf("%d kills; spool holds all %d frames once, in order", kills, len(seqs))
}

// TestLoadCrash kills a real `backfill load` at random moments and restarts it: the database
// must end up equal to the model, with no half-loaded segment ever left behind.
func TestLoadCrash(t *testing.T) {
	t.Parallel()
	r := startRelay(t, relaytest.Config{Seed: 202, Users: 20, Events: 5000, Collisions: true})
	dir := t.TempDir()
	if code := backfill(t, "fetch", "--relay-url", r.URL(), "--spool", dir, "--days", "-1",
		"--idle-timeout", "2s", "--segment-size", "60000"); code != 0 {
		t.Fatalf("fetch exit code %d", code)
	}
	dsn := newDatabase(t)
	args := []string{"load", "--spool", dir, "--database-url", dsn, "--batch-size", "1", "--workers", "2"}
	rng := rand.New(rand.NewPCG(8, 8))
	kills := 0
	for i := 0; i < 6; i++ {
		cmd, out := startProc(t, args...)
		time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == -1 {
			kills++
		} else if err != nil {
			t.Fatalf("load run %d failed before the kill: %v\n%s", i, err, out)
		}
	}
	cmd, out := startProc(t, args...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final load: %v\n%s", err, out)
	}
	if kills == 0 {
		t.Log("no load run was killed mid-way (the machine was fast); the final state is still checked")
	}
	log := r.Log()
	compareModel(t, dumpDB(t, dsn), r.Model(log[0].Seq, r.Head()))
	t.Logf("%d kills", kills)
}

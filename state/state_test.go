package state

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

type checkpoint struct {
	Relay string `json:"relay"`
	Seq   int64  `json:"seq"`
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fetch.json")

	t.Run("missing", func(t *testing.T) {
		var got checkpoint
		if err := Load(path, &got); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Load of a missing file: got %v, want ErrNotFound", err)
		}
	})
	t.Run("round trip and overwrite", func(t *testing.T) {
		for _, want := range []checkpoint{{"relay.example", 1}, {"relay.example", 42}} {
			if err := Save(path, want); err != nil {
				t.Fatal(err)
			}
			var got checkpoint
			if err := Load(path, &got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Fatalf("directory holds %d files, want only the checkpoint (no temp files left)", len(entries))
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
			t.Fatal(err)
		}
		var got checkpoint
		err := Load(path, &got)
		if err == nil || errors.Is(err, ErrNotFound) {
			t.Fatalf("Load of a corrupt file: got %v, want a decode error", err)
		}
	})
}

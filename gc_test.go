package main

import (
	"testing"

	"github.com/alecthomas/kong"
)

// TestLoadsCommands checks which parsed command lines take the loader's GC settings: kong's
// command path is what run() passes to loads.
func TestLoadsCommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"load", "--spool", "s", "--database-url", "postgres://x/y"}, true},
		{[]string{"run", "--spool", "s", "--database-url", "postgres://x/y"}, true},
		{[]string{"--days", "3", "--spool", "s", "--database-url", "postgres://x/y"}, true}, // the default command
		{[]string{"fetch", "--spool", "s"}, false},
		{[]string{"status", "--spool", "s"}, false},
		{[]string{"spool", "ls", "--spool", "s"}, false},
	} {
		var cli CLI
		parser, err := kong.New(&cli, kong.Vars{"version": "test"})
		if err != nil {
			t.Fatal(err)
		}
		kctx, err := parser.Parse(joinNegativeValues(tc.args))
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := loads(kctx.Command()); got != tc.want {
			t.Errorf("%v: command %q: loads %v, want %v", tc.args, kctx.Command(), got, tc.want)
		}
	}
}

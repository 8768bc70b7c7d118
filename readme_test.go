package main

import (
	"os"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// TestREADMEFlags keeps README's command and flag tables in step with --help.
func TestREADMEFlags(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var cli CLI
	parser, err := kong.New(&cli, kong.Vars{"version": "test"})
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *kong.Node)
	seen := 0
	walk = func(n *kong.Node) {
		if n.Type == kong.CommandNode && !strings.Contains(string(readme), n.Name) {
			t.Errorf("README does not mention the command %q", n.Path())
		}
		for _, f := range n.Flags {
			if f.Name == "help" {
				continue
			}
			seen++
			if !strings.Contains(string(readme), "`--"+f.Name+"`") {
				t.Errorf("README does not document --%s (%s)", f.Name, n.Path())
			}
			if f.Envs != nil {
				for _, e := range f.Envs {
					if !strings.Contains(string(readme), e) {
						t.Errorf("README does not name the env var %s of --%s", e, f.Name)
					}
				}
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(parser.Model.Node)
	if seen < 20 {
		t.Fatalf("walked only %d flags: the check is not looking at the real command line", seen)
	}
}

func TestJoinNegativeValues(t *testing.T) {
	got := strings.Join(joinNegativeValues([]string{"--days", "-1", "--workers", "8", "--until-cursor", "-5x", "fetch"}), " ")
	want := "--days=-1 --workers 8 --until-cursor -5x fetch"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestEveryCommandListed: a subcommand written in its own file but left out
// of main.go's list would silently not exist.
func TestEveryCommandListed(t *testing.T) {
	listed := map[string]bool{}
	for _, c := range commands {
		listed[c.Name] = true
	}
	re := regexp.MustCompile(`(?m)^var \w+Command = cli\.Command\{Name: "([a-z-]+)"`)
	files, _ := filepath.Glob("*.go")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			n++
			if !listed[string(m[1])] {
				t.Errorf("%s defines command %q but main.go's commands does not list it", f, m[1])
			}
		}
	}
	if n != len(commands) {
		t.Errorf("%d command definitions, %d listed", n, len(commands))
	}
}

package main

import (
	"testing"

	"github.com/nixlos/nixlos/internal/cli"
)

// TestEveryCommandListed: a subcommand written in its own file but left out
// of main.go's list would silently not exist.
func TestEveryCommandListed(t *testing.T) {
	problems, err := cli.Unlisted(".", commands)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

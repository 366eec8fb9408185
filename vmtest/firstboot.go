package vmtest

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The lines an installed nixlos example system prints when it comes up
// from its own disk (DESIGN.md, "The installed system and first boot").
var (
	bootedLine = regexp.MustCompile(`nix-los: booted host=(\S+) generation=(\d+)`)
	ageKeyLine = regexp.MustCompile(`age key: (present|missing) (\S+)`)
)

// Booted is what an installed system reported on its first console.
type Booted struct {
	Host       string
	Generation int
	// Report is the text from the booted line to the age key line: the
	// mounts and whether the age key is there.
	Report string
	// AgeKey is "present" or "missing".
	AgeKey string
	// Prompts counts the LUKS passphrase prompts answered.
	Prompts int
	// Elapsed is power-on → the booted line.
	Elapsed time.Duration
}

// BootInstalled waits on a VM booting an installed disk: it types
// passphrase at every stage-1 prompt that contains "passphrase" (as NixOS's
// does), until the system prints its booted line, then reads its report up
// to the age key line. The passphrase never goes to the console output
// (the guest turns echo off) and is not part of any error.
func BootInstalled(ctx context.Context, vm *VM, passphrase []byte, timeout time.Duration) (Booted, error) {
	var b Booted
	deadline := time.Now().Add(timeout)
	prompt := regexp.MustCompile(`(?i)passphrase[^\n]*: ?|` + bootedLine.String())
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return b, fmt.Errorf("vmtest: %s: no booted line within %s; console tail:\n%s", vm.opts.Name, timeout, vm.Tail(20))
		}
		m, err := vm.Expect(ctx, prompt, left)
		if err != nil {
			return b, err
		}
		if strings.HasPrefix(m[0], "nix-los: booted") {
			b.Host, b.Elapsed = m[1], vm.Elapsed()
			b.Generation, _ = strconv.Atoi(m[2])
			break
		}
		if len(passphrase) == 0 {
			return b, fmt.Errorf("vmtest: %s: the system asks for a passphrase and none was given", vm.opts.Name)
		}
		if b.Prompts++; b.Prompts > 3 {
			return b, fmt.Errorf("vmtest: %s: the passphrase was refused %d times", vm.opts.Name, b.Prompts-1)
		}
		time.Sleep(300 * time.Millisecond) // the prompt is out before echo is off
		if err := vm.Send(string(passphrase) + "\n"); err != nil {
			return b, err
		}
	}
	m, err := vm.Expect(ctx, ageKeyLine, time.Until(deadline)+10*time.Second)
	if err != nil {
		return b, err
	}
	b.AgeKey = m[1]
	con := strings.ReplaceAll(vm.Console(), "\r", "")
	rep := con[max(0, strings.LastIndex(con, "nix-los: booted")):]
	if i := strings.Index(rep, m[0]); i >= 0 {
		rep = rep[:i+len(m[0])]
	}
	b.Report = rep
	return b, nil
}

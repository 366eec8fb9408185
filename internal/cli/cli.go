// Package cli holds what both nixlos commands share: flag sets that report
// errors instead of exiting, a small subcommand dispatcher, and Exit.
//
// Library packages never exit or print; they return errors (package errs).
// A command's run(args, stdout, stderr) returns an error and main calls
// Exit, which maps it with errs.Code:
//
//	0 success · 1 failure during work · 2 bad usage or bad input
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/nixlos/nixlos/internal/errs"
)

// Exit prints err (if any) as "prog: err" to stderr and exits with errs.Code.
func Exit(prog string, err error) {
	if err != nil && !errors.Is(err, errs.ErrHelp) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
	}
	os.Exit(errs.Code(err))
}

// Command is one subcommand of a CLI.
type Command struct {
	Name    string
	Summary string // one line for the command list
	Run     func(args []string, stdout, stderr io.Writer) error
}

// Dispatch runs the subcommand named by args[0] from cmds. It prints help for
// -h/--help/help, and returns a usage error for an unknown command.
// def, if not nil, runs when args is empty.
func Dispatch(prog, about string, cmds []Command, def func(stdout, stderr io.Writer) error, args []string, stdout, stderr io.Writer) error {
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "%s — %s\n\nUsage: %s COMMAND [flags] [args]\n\nCommands:\n", prog, about, prog)
		sorted := append([]Command(nil), cmds...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
		for _, c := range sorted {
			fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
		}
		fmt.Fprintf(w, "\nRun '%s COMMAND --help' for a command's flags.\nExit codes: 0 success, 1 failure during work, 2 bad usage or bad input.\n", prog)
	}
	if len(args) == 0 {
		if def != nil {
			return def(stdout, stderr)
		}
		usage(stderr)
		return errs.Usagef("no command given (fix: run '%s --help')", prog)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	}
	for _, c := range cmds {
		if c.Name == args[0] {
			return c.Run(args[1:], stdout, stderr)
		}
	}
	return errs.BadInput(args[0], fmt.Sprintf("run '%s --help' for the list of commands", prog), "unknown command")
}

// NewFlagSet returns a FlagSet that reports errors as InputError rather than
// exiting, writes its help to stdout, and prints usage text above the flags.
func NewFlagSet(name, usage string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "%s\n\nFlags:\n", strings.TrimSpace(usage))
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// Parse parses args with fs and maps flag errors to InputError (exit 2) and
// -h/--help to ErrHelp after printing usage.
func Parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) { // flag has already printed fs.Usage
		return errs.ErrHelp
	}
	if err != nil {
		return &errs.InputError{Input: fs.Name(), Err: err, Fix: "run with --help for the flags"}
	}
	return nil
}

// Interspersed parses flags that may come before or after positional args
// ("mkiso hosts FLAKE --json"), returning the positional args.
func Interspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := Parse(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// Unlisted returns the problems between the subcommands a program defines
// in the Go files of dir (package-level `var xCommand = cli.Command{Name: …}`)
// and the ones its dispatch list holds: a command defined but left out of
// the list would silently not exist. A test of each program calls it.
func Unlisted(dir string, cmds []Command) ([]string, error) {
	listed := map[string]bool{}
	for _, c := range cmds {
		listed[c.Name] = true
	}
	re := regexp.MustCompile(`(?m)^var \w+Command = cli\.Command\{Name: "([a-z-]+)"`)
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var problems []string
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			n++
			if !listed[string(m[1])] {
				problems = append(problems, fmt.Sprintf("%s defines command %q but the commands list does not hold it", filepath.Base(f), m[1]))
			}
		}
	}
	if n != len(cmds) {
		problems = append(problems, fmt.Sprintf("%d command definitions, %d listed", n, len(cmds)))
	}
	return problems, nil
}

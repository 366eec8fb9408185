// Package errs is the leaf error vocabulary every nixlos package shares: an
// input error (exit code 2) names the user's input and the fix; any other
// error is a failure during work (exit code 1). It holds no CLI code — the
// commands' flags, dispatch and process exit live in internal/cli, which maps
// errors to exit codes with Code.
package errs

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// InputError is bad usage or bad input: exit code 2. Its message names the
// input; Fix, when set, says how to put it right.
type InputError struct {
	Input string // what was wrong: a path, a flag, a host name
	Err   error  // what is wrong with it
	Fix   string // how to fix it (optional)
}

func (e *InputError) Error() string {
	var b strings.Builder
	if e.Input != "" {
		b.WriteString(e.Input)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	if e.Fix != "" {
		b.WriteString(" (fix: ")
		b.WriteString(e.Fix)
		b.WriteString(")")
	}
	return b.String()
}

func (e *InputError) Unwrap() error { return e.Err }

// BadInput returns an *InputError for input, with a formatted reason and a fix.
func BadInput(input, fix, format string, args ...any) error {
	return &InputError{Input: input, Err: fmt.Errorf(format, args...), Fix: fix}
}

// Usagef is bad usage of a command (exit 2).
func Usagef(format string, args ...any) error {
	return &InputError{Err: fmt.Errorf(format, args...)}
}

// ErrHelp is returned when the user asked for help: printed usage, exit 0.
var ErrHelp = flag.ErrHelp

// Exit codes, the only place they are defined.
const (
	CodeOK      = 0 // success, or help was asked for
	CodeFailure = 1 // failure during work
	CodeInput   = 2 // bad usage or bad input
)

// Code maps an error to the process exit code.
func Code(err error) int {
	var ie *InputError
	switch {
	case err == nil, errors.Is(err, ErrHelp):
		return CodeOK
	case errors.As(err, &ie):
		return CodeInput
	default:
		return CodeFailure
	}
}

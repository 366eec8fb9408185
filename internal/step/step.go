// Package step is the one step type of nixlos's long jobs — the mkiso build
// (package pipeline), the install (package install, where a resumed
// install marks done steps skipped) and the partition executor (package
// partition/apply, one step per plan operation): a step carries its
// name, what it will do and the function that does it, in the manner of
// Talos' PhaseList. A job builds its list with Append and AppendWhen (a
// plan you can print and test before anything runs), then runs it in order.
package step

import (
	"context"
	"errors"
	"fmt"
)

// Step is one named step of a job whose state is S.
type Step[S any] struct {
	Name   string `json:"name"`
	Detail string `json:"detail"`
	// Skip, when set, says why the step will not run.
	Skip string `json:"skip,omitempty"`
	// Run does the step. It is not part of a printed plan.
	Run func(S) error `json:"-"`
}

// List is a job's steps in execution order.
type List[S any] []Step[S]

// Append adds a step that runs fn.
func (l List[S]) Append(name, detail string, fn func(S) error) List[S] {
	return append(l, Step[S]{Name: name, Detail: detail, Run: fn})
}

// AppendWhen adds the step only when cond holds.
func (l List[S]) AppendWhen(cond bool, name, detail string, fn func(S) error) List[S] {
	if !cond {
		return l
	}
	return l.Append(name, detail, fn)
}

// AppendSkipped adds a step that is listed with the reason it will not run.
func (l List[S]) AppendSkipped(name, detail, why string, fn func(S) error) List[S] {
	return append(l, Step[S]{Name: name, Detail: detail, Skip: why, Run: fn})
}

// Names lists the steps' names in order.
func (l List[S]) Names() []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = s.Name
	}
	return out
}

// Find returns the named step, or false.
func (l List[S]) Find(name string) (Step[S], bool) {
	for _, s := range l {
		if s.Name == name {
			return s, true
		}
	}
	return Step[S]{}, false
}

// Hooks wrap a run. Each, when set, runs every step that is not skipped
// (call run to do it: that is where progress lines, timings and records
// go); Skipped, when set, is told of each skipped step.
type Hooks[S any] struct {
	Each    func(s Step[S], run func() error) error
	Skipped func(s Step[S])
}

// ErrNoRun is a step without a function.
var ErrNoRun = errors.New("step has no function")

// Run runs the steps in order on state, stopping at the first error or
// when ctx is done. It returns that error unchanged (the hooks wrap it).
func (l List[S]) Run(ctx context.Context, state S, h Hooks[S]) error {
	for _, s := range l {
		if s.Skip != "" {
			if h.Skipped != nil {
				h.Skipped(s)
			}
			continue
		}
		if s.Run == nil {
			return fmt.Errorf("%s: %w", s.Name, ErrNoRun)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		run := func() error { return s.Run(state) }
		var err error
		if h.Each != nil {
			err = h.Each(s, run)
		} else {
			err = run()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

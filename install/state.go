package install

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// StateFile is where an install records its completed steps, inside Root
// (on the filesystem that holds /var/lib; see statePlace).
const StateFile = "/var/lib/nixlos/install-state.json"

// stateVersion is the only State.Version this package reads and writes.
const stateVersion = 1

// State is the record of an install in progress on its target: the plan
// it belongs to and the steps completed so far, in plan order. The
// installer removes it when the install is complete (write-log).
type State struct {
	Version   int      `json:"version"`
	PlanHash  string   `json:"planHash"` // Plan.Hash of the install that wrote it
	Host      string   `json:"host"`
	Completed []string `json:"completed"`
	// System is the store path built or copied (set once build or
	// copy-closure completed): the later steps install it.
	System string `json:"system,omitempty"`
}

// knownSteps are the step names a state may list.
var knownSteps = []string{StepVerifyKey, StepLUKSKeys, StepPartition, StepMount, StepCopyFlake, StepInstallKey,
	StepBuild, StepCopy, StepProfile, StepActivate, StepBootloader, StepBootCheck, StepWriteLog, StepUnmount}

// ParseState decodes a state file strictly: version 1, a sha256 plan hash,
// known step names without repeats, and a store path (or nothing) as the
// system. Anything else is an error: the caller starts over.
func ParseState(data []byte) (*State, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var st State
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("install state: %w", err)
	}
	if dec.More() {
		return nil, errors.New("install state: data after the JSON object")
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("install state: version %d, want %d", st.Version, stateVersion)
	}
	if !validHash(st.PlanHash) {
		return nil, fmt.Errorf("install state: plan hash %q is not sha256:<64 hex digits>", st.PlanHash)
	}
	seen := map[string]bool{}
	for _, s := range st.Completed {
		if !slices.Contains(knownSteps, s) {
			return nil, fmt.Errorf("install state: unknown step %q", s)
		}
		if seen[s] {
			return nil, fmt.Errorf("install state: step %q twice", s)
		}
		seen[s] = true
	}
	if st.System != "" && !isStorePath(st.System) {
		return nil, fmt.Errorf("install state: system %q is not a store path", st.System)
	}
	return &st, nil
}

func validHash(h string) bool {
	x, ok := strings.CutPrefix(h, "sha256:")
	if !ok || len(x) != 64 {
		return false
	}
	_, err := hex.DecodeString(x)
	return err == nil && strings.ToLower(x) == x
}

// Last is the last completed step, "" when none.
func (st *State) Last() string {
	if st == nil || len(st.Completed) == 0 {
		return ""
	}
	return st.Completed[len(st.Completed)-1]
}

// Done reports whether step completed.
func (st *State) Done(step string) bool {
	return st != nil && slices.Contains(st.Completed, step)
}

// writeStateFile writes st to path atomically: a 0600 temporary file in
// the same directory (created 0700), synced, renamed over path, and the
// directory synced, so a power cut leaves the old or the new state.
func writeStateFile(path string, st *State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil { // /var/lib stays 0755
		return fmt.Errorf("install state: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("install state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".install-state-*")
	if err != nil {
		return fmt.Errorf("install state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("install state: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("install state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("install state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("install state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install state: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readStateFile reads and parses the state at path; a missing file is
// (nil, nil).
func readStateFile(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseState(data)
}

// hashInput is what Plan.Hash covers: what the install writes and where.
// It leaves out what may differ between an interrupted run and its re-run
// without changing the result: where LUKS keys come from (a key file left
// on the live system, the sops file, the terminal), the steps' texts, and
// the resume decision itself.
type hashInput struct {
	Host      string            `json:"host"`
	FlakeDir  string            `json:"flakeDir"`
	SopsFile  string            `json:"sopsFile"`
	Root      string            `json:"root"`
	Disks     map[string]string `json:"disks"`
	Layout    any               `json:"layout"`
	Attribute string            `json:"attribute"`
	System    string            `json:"system"`
	Steps     []string          `json:"steps"`
}

// computeHash is the sha256 of the plan's JSON (hashInput), as
// "sha256:<hex>".
func (p *Plan) computeHash() (string, error) {
	in := hashInput{Host: p.Host, FlakeDir: p.FlakeDir, SopsFile: p.SopsFile, Root: p.Root, Disks: p.Disks,
		Layout: p.Layout, Attribute: p.Attribute, System: p.System}
	for _, s := range p.Steps {
		in.Steps = append(in.Steps, s.Name)
	}
	data, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("plan hash: %w", err)
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Step actions on a resume.
const (
	actRun    = "run"    // run the step
	actSkip   = "skip"   // done by the interrupted install
	actReopen = "reopen" // partition: open and mount what it made, format nothing
)

// alwaysRun are the steps a resume runs again even when they completed:
// they only prepare this run (key check and key files in memory or on
// tmpfs, mounts) or check and finish (boot check, log, unmount).
var alwaysRun = []string{StepVerifyKey, StepLUKSKeys, StepMount, StepBootCheck, StepWriteLog, StepUnmount}

// resumeActions says, for each step of steps, what a resume after st does:
// the steps up to the last completed one are skipped (partition is
// reopened), except the always-run ones; every step after it runs.
func resumeActions(steps []string, st *State) []string {
	last := -1
	for i, s := range steps {
		if st.Done(s) {
			last = i
		}
	}
	out := make([]string, len(steps))
	for i, s := range steps {
		switch {
		case i > last || slices.Contains(alwaysRun, s):
			out[i] = actRun
		case s == StepPartition:
			out[i] = actReopen
		default:
			out[i] = actSkip
		}
	}
	return out
}

// Resume is the decision to continue an interrupted install.
type Resume struct {
	State *State `json:"state"`
	After string `json:"after"` // the last completed step
}

// CanResume says whether an install of p may continue after st: st must
// be this plan's (same hash), have the layout made (partition completed)
// and not be complete. why says why not.
func (p *Plan) CanResume(st *State) (ok bool, why string) {
	switch {
	case st == nil:
		return false, "no interrupted install on the target disks"
	case st.PlanHash != p.Hash:
		return false, "the target disks hold an interrupted install of another plan (" + st.Host + "); starting over"
	case !st.Done(StepPartition):
		return false, "the interrupted install had not finished partitioning; starting over"
	}
	return true, ""
}

// SetResume makes p continue the interrupted install st (CanResume must
// say yes): the steps it completed are marked skipped, partition becomes a
// reopen of the layout, and Run starts by removing any boot path an
// interrupted boot loader step may have left.
func (p *Plan) SetResume(st *State) {
	p.Resume = &Resume{State: st, After: st.Last()}
	names := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		names[i] = s.Name
	}
	for i, a := range resumeActions(names, st) {
		s := &p.Steps[i]
		switch {
		case s.Skip != "":
		case a == actSkip:
			s.Skip = "done by the interrupted install"
		case a == actReopen:
			s.Detail = "done by the interrupted install: reopen its md, LUKS and LVM devices (nothing is formatted)"
		}
	}
}

// ResumeLine is the console line of a resume decision.
func (p *Plan) ResumeLine() string {
	if p.Resume == nil {
		return ""
	}
	return fmt.Sprintf("resume: continuing after step %s (state %s on the target)", p.Resume.After, StateFile)
}

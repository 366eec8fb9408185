package pxe

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nixlos/nixlos/pxe/wire"
)

// Event is one line of `mkiso serve --json`.
type Event struct {
	Time     time.Time `json:"time"`
	MAC      string    `json:"mac"`
	Host     string    `json:"host"`
	State    string    `json:"state"`
	Message  string    `json:"message"`
	Progress int       `json:"-"` // 0–100, -1 when unknown; shown in the table only
	// Discovered is set on a "discovered" event: the machine's vendor,
	// firmware, RAM and disks (mkiso serve --discover).
	Discovered *wire.DiscoverySummary `json:"discovered,omitempty"`
}

// MachineState is one row of the machine table.
type MachineState struct {
	MAC, Host, State, Message string
	Progress                  int // -1 when unknown
	Updated                   time.Time
	Installed                 bool // reported complete: boots from local disk
	// Discovered is the hardware an unknown machine reported in discovery
	// mode (nil otherwise).
	Discovered *wire.DiscoverySummary
}

// MaxMachines bounds the machine table; events for further new MACs are dropped.
const MaxMachines = 4096

// Tracker keeps the machine table, the boot tokens and the installed set,
// and passes every event to Sink. Safe for concurrent use.
type Tracker struct {
	Sink      func(Event)      // may be nil
	Now       func() time.Time // time.Now when nil
	StateFile string           // where installed MACs persist ("" = memory only)

	mu       sync.Mutex
	machines map[string]*MachineState
	tokens   map[string]*token // by MAC
}

type token struct {
	value string
	used  bool
}

// NewTracker returns a Tracker; with stateFile set it loads the MACs that
// already reported complete from it (a missing file is an empty set).
func NewTracker(sink func(Event), stateFile string) (*Tracker, error) {
	t := &Tracker{Sink: sink, StateFile: stateFile, machines: map[string]*MachineState{}, tokens: map[string]*token{}}
	if stateFile == "" {
		return t, nil
	}
	data, err := os.ReadFile(stateFile)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	var st persisted
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("state file %s: %w (fix: delete it to forget installed machines)", stateFile, err)
	}
	for mac, host := range st.Installed {
		t.machines[mac] = &MachineState{MAC: mac, Host: host, State: wire.StateComplete, Progress: 100, Installed: true, Message: "installed earlier"}
	}
	return t, nil
}

type persisted struct {
	Installed map[string]string `json:"installed"` // MAC → host
}

func (t *Tracker) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Record updates mac's row and emits an event. progress < 0 keeps the
// previous progress.
func (t *Tracker) Record(mac, host, state, message string, progress int) {
	t.mu.Lock()
	m := t.machines[mac]
	if m == nil && len(t.machines) >= MaxMachines {
		t.mu.Unlock() // a flood of made-up MACs does not grow the table
		return
	}
	if m == nil {
		m = &MachineState{MAC: mac, Progress: -1}
		t.machines[mac] = m
	}
	if host != "" {
		m.Host = host
	}
	if state != wire.StateRefused {
		m.State = state
	} else if m.State == "" {
		m.State = state
	}
	if progress >= 0 {
		m.Progress = progress
	}
	if state == wire.StateComplete {
		m.Progress = 100
		m.Installed = true
	}
	m.Message = message
	m.Updated = t.now()
	ev := Event{Time: m.Updated.UTC(), MAC: mac, Host: m.Host, State: state, Message: message, Progress: m.Progress}
	var saveErr error
	if state == wire.StateComplete {
		saveErr = t.saveLocked()
	}
	sink := t.Sink
	t.mu.Unlock()
	if sink != nil {
		sink(ev)
		if saveErr != nil {
			sink(Event{Time: ev.Time, MAC: mac, Host: ev.Host, State: state, Message: "cannot save state: " + saveErr.Error(), Progress: -1})
		}
	}
}

func (t *Tracker) saveLocked() error {
	if t.StateFile == "" {
		return nil
	}
	st := persisted{Installed: map[string]string{}}
	for mac, m := range t.machines {
		if m.Installed {
			st.Installed[mac] = m.Host
		}
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := t.StateFile + ".tmp"
	if err := os.MkdirAll(filepath.Dir(t.StateFile), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, t.StateFile)
}

// Discovered records that mac, not in the map, reported its hardware in
// discovery mode: its row is "discovered" with sum, and the event carries sum.
func (t *Tracker) Discovered(mac string, sum wire.DiscoverySummary) {
	t.mu.Lock()
	m := t.machines[mac]
	if m == nil && len(t.machines) >= MaxMachines {
		t.mu.Unlock()
		return
	}
	if m == nil {
		m = &MachineState{MAC: mac, Progress: -1}
		t.machines[mac] = m
	}
	m.State, m.Message, m.Updated, m.Discovered = wire.StateDiscovered, sum.String()+" (waiting: mkiso enroll "+mac+" --host NAME)", t.now(), &sum
	ev := Event{Time: m.Updated.UTC(), MAC: mac, Host: m.Host, State: wire.StateDiscovered, Message: m.Message, Progress: m.Progress, Discovered: &sum}
	sink := t.Sink
	t.mu.Unlock()
	if sink != nil {
		sink(ev)
	}
}

// SetSink replaces the event sink.
func (t *Tracker) SetSink(sink func(Event)) {
	t.mu.Lock()
	t.Sink = sink
	t.mu.Unlock()
}

// Installed reports whether mac reported complete (now or in the state file).
func (t *Tracker) Installed(mac string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.machines[mac]
	return m != nil && m.Installed
}

// Forget clears mac's installed flag so that its next boot reinstalls.
func (t *Tracker) Forget(mac string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.machines[mac]; m != nil {
		m.Installed = false
	}
	return t.saveLocked()
}

// IssueToken makes a new random boot token for mac; it replaces any earlier one.
func (t *Tracker) IssueToken(mac string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("boot token: %w", err)
	}
	v := hex.EncodeToString(b[:])
	t.mu.Lock()
	t.tokens[mac] = &token{value: v}
	t.mu.Unlock()
	return v, nil
}

// Token errors, returned by UseToken.
var (
	ErrNoToken    = errors.New("no boot token issued for this MAC")
	ErrBadToken   = errors.New("token does not match this MAC's latest boot")
	ErrTokenUsed  = errors.New("token already used")
	ErrNotAllowed = errors.New("MAC is not allowed to fetch the key")
)

// UseToken consumes mac's token: it succeeds once for the latest token.
func (t *Tracker) UseToken(mac, value string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	tk := t.tokens[mac]
	switch {
	case tk == nil:
		return ErrNoToken
	case len(value) != len(tk.value) || !constantEq(value, tk.value):
		return ErrBadToken
	case tk.used:
		return ErrTokenUsed
	}
	tk.used = true
	return nil
}

func constantEq(a, b string) bool {
	var v byte
	for i := 0; i < len(a); i++ {
		v |= a[i] ^ b[i]
	}
	return v == 0
}

// Snapshot returns the machine table sorted by MAC.
func (t *Tracker) Snapshot() []MachineState {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]MachineState, 0, len(t.machines))
	for _, m := range t.machines {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out
}

// JSONSink writes each event as one JSON object per line to w.
func JSONSink(w io.Writer) func(Event) {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	return func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(e)
	}
}

// LineSink writes each event as a plain text line to w.
func LineSink(w io.Writer) func(Event) {
	var mu sync.Mutex
	return func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "%s %s %-12s %-10s %s %s\n", e.Time.Format("15:04:05"), e.MAC, dash(e.Host), e.State, progressText(e.Progress), e.Message)
	}
}

// TableSink redraws the whole machine table of t on w (a terminal) after
// every event.
func TableSink(w io.Writer, t *Tracker, header string) func(Event) {
	var mu sync.Mutex
	return func(Event) {
		mu.Lock()
		defer mu.Unlock()
		var b strings.Builder
		b.WriteString("\x1b[H\x1b[2J")
		b.WriteString(header)
		b.WriteString("\n\n")
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MAC\tHOST\tSTATE\tPROGRESS\tLAST MESSAGE\tUPDATED")
		for _, m := range t.Snapshot() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.MAC, dash(m.Host), m.State, progressText(m.Progress), m.Message, m.Updated.Format("15:04:05"))
		}
		tw.Flush()
		io.WriteString(w, b.String())
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func progressText(p int) string {
	if p < 0 {
		return "-"
	}
	return fmt.Sprintf("%d%%", p)
}

// Package wire is the HTTP protocol between mkiso serve (package pxe) and
// the installer: the bodies of /v1/status, /v1/machine, /v1/discover and
// /v1/key, their validation, the machine states, and the client calls the
// installer makes. It is all the installer needs of PXE: it does not link
// the server, the bundle export or the image writers.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
)

// States a machine goes through, as shown in events and the table.
const (
	StateDHCP       = "dhcp"       // DHCP answered with boot information
	StateBooting    = "booting"    // boot script, kernel or initrd fetched
	StateInstalling = "installing" // the installer reported progress
	StateComplete   = "complete"   // the installer reported success
	StateFailed     = "failed"     // the installer reported failure
	StateLocalBoot  = "local-boot" // sent to its local disk (already installed)
	StateRefused    = "refused"    // a key request was refused
	// StateDiscovered (discover.go): an unknown machine reported its hardware.
)

// Status is the body of POST /v1/status.
type Status struct {
	MAC      string `json:"mac"`
	Host     string `json:"host,omitempty"`
	State    string `json:"state"`
	Message  string `json:"message,omitempty"`
	Progress *int   `json:"progress,omitempty"` // 0–100
}

// ReportableStates are the states an installer may POST.
var ReportableStates = []string{StateBooting, StateInstalling, StateComplete, StateFailed}

// maxStatusBody bounds a status request body.
const maxStatusBody = 64 << 10

// DecodeStatus reads and validates a status report: mac must be a MAC,
// state one of ReportableStates, progress 0–100, message at most 1024 bytes.
// The returned MAC is canonical.
func DecodeStatus(r io.Reader) (Status, error) {
	var st Status
	dec := json.NewDecoder(io.LimitReader(r, maxStatusBody))
	if err := dec.Decode(&st); err != nil {
		return Status{}, fmt.Errorf("status body is not JSON: %w", err)
	}
	mac, err := CanonicalMAC(st.MAC)
	if err != nil {
		return Status{}, err
	}
	st.MAC = mac
	if !slices.Contains(ReportableStates, st.State) {
		return Status{}, fmt.Errorf("state %q is not one of %s", st.State, strings.Join(ReportableStates, ", "))
	}
	if st.Progress != nil && (*st.Progress < 0 || *st.Progress > 100) {
		return Status{}, fmt.Errorf("progress %d is not 0-100", *st.Progress)
	}
	if len(st.Message) > 1024 {
		st.Message = st.Message[:1024]
	}
	st.Message = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, st.Message)
	if len(st.Host) > 63 || (st.Host != "" && !hostRe.MatchString(st.Host)) {
		return Status{}, fmt.Errorf("host %q is not a valid host name", st.Host)
	}
	return st, nil
}

// QueryMAC returns the canonical MAC of the "mac" query parameter.
func QueryMAC(q url.Values) (string, error) {
	v := q.Get("mac")
	if v == "" {
		return "", errors.New("mac parameter missing")
	}
	return CanonicalMAC(v)
}

// MachineInfo is the reply of GET /v1/machine?mac=MAC: what the map says
// about a MAC, for an installer that did not get it on its command line.
type MachineInfo struct {
	MAC       string            `json:"mac"`
	Host      string            `json:"host"`
	Disk      string            `json:"disk,omitempty"`
	Disks     map[string]string `json:"disks,omitempty"` // per-disk form: layout disk name → device
	After     string            `json:"after,omitempty"`
	Auto      bool              `json:"auto"`      // install unattended (always true for a mapped MAC)
	Key       bool              `json:"key"`       // /v1/key may serve this MAC (with its boot token)
	Installed bool              `json:"installed"` // reported complete: normally boots from local disk
	// Waiting says why a machine in discovery mode must wait although it is
	// in the map: its host is not in the served bundle yet (rebuild it).
	Waiting string `json:"waiting,omitempty"`
}

// maxMachineBody bounds a /v1/machine reply.
const maxMachineBody = 16 << 10

// DecodeMachineInfo reads and validates a /v1/machine reply the way the
// installer must: a canonical MAC, a valid host, disk, disks and after as in the map.
func DecodeMachineInfo(r io.Reader) (MachineInfo, error) {
	var mi MachineInfo
	if err := json.NewDecoder(io.LimitReader(r, maxMachineBody)).Decode(&mi); err != nil {
		return MachineInfo{}, fmt.Errorf("machine reply is not JSON: %w", err)
	}
	mac, err := CanonicalMAC(mi.MAC)
	if err != nil {
		return MachineInfo{}, err
	}
	mi.MAC = mac
	if !hostRe.MatchString(mi.Host) {
		return MachineInfo{}, fmt.Errorf("host %q is not a valid host name", mi.Host)
	}
	if mi.Disk != "" {
		if err := CheckDiskDev(mi.Disk); err != nil {
			return MachineInfo{}, fmt.Errorf("disk %w", err)
		}
	}
	if err := CheckDisks(mi.Disks); err != nil {
		return MachineInfo{}, err
	}
	if mi.After != "" && !slices.Contains(ValidAfter, mi.After) {
		return MachineInfo{}, fmt.Errorf("after %q must be one of %s", mi.After, strings.Join(ValidAfter, ", "))
	}
	return mi, nil
}

// StateDiscovered is the state of an unknown machine that booted in
// discovery mode (mkiso serve --discover) and posted its hardware: it waits
// until `mkiso enroll` adds its MAC to the map.
const StateDiscovered = "discovered"

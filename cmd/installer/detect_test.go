package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/errs"
)

// TestDetectCommand runs `installer detect` on this machine (read-only):
// --json must decode to what hw.Detect sees, and the table must list every
// disk and NIC of that report.
func TestDetectCommand(t *testing.T) {
	want, err := hw.Detect(hw.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run([]string{"detect", "--json"}, &out, &errOut); err != nil {
		t.Fatalf("detect --json: %v\n%s", err, errOut.String())
	}
	var got hw.Report
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("detect --json is not a hw.Report: %v\n%s", err, out.String())
	}
	// Carrier/up may flip between the two reads only on a changing network;
	// disks must match exactly — but for loop devices, which tests running
	// beside this one attach, fill and detach meanwhile.
	if !reflect.DeepEqual(noLoops(got.Disks), noLoops(want.Disks)) || got.Firmware != want.Firmware || got.CPU != want.CPU {
		t.Errorf("detect --json disks/firmware/cpu differ from hw.Detect:\n%s", out.String())
	}
	for _, field := range []string{`"firmware"`, `"disks"`, `"nics"`, `"memory"`, `"cpu"`, `"sizeBytes"`, `"bootMedium"`} {
		if !strings.Contains(out.String(), field) {
			t.Errorf("JSON lacks %s", field)
		}
	}

	out.Reset()
	if err := run([]string{"detect"}, &out, &errOut); err != nil {
		t.Fatalf("detect: %v", err)
	}
	table := out.String()
	t.Logf("\n%s", table)
	for _, d := range want.Disks {
		if !strings.Contains(table, d.Path+" ") {
			t.Errorf("table lacks disk %s", d.Path)
		}
		if d.BootMedium && !strings.Contains(table, "BOOT MEDIUM: "+d.BootReason) {
			t.Errorf("table does not flag boot medium %s", d.Path)
		}
	}
	for _, n := range want.NICs {
		if !strings.Contains(table, n.Name+" ") {
			t.Errorf("table lacks NIC %s", n.Name)
		}
	}
	if !strings.Contains(table, "Firmware  "+strings.ToUpper(string(want.Firmware))) {
		t.Errorf("table lacks firmware line")
	}
}

func TestDetectUsage(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"detect", "--help"}, &out, &out); errs.Code(err) != 0 || !strings.Contains(out.String(), "Usage: installer detect [--json]") {
		t.Errorf("--help: %v\n%s", err, out.String())
	}
	for _, args := range [][]string{{"detect", "--bogus"}, {"detect", "extra"}} {
		if err := run(args, &out, &out); errs.Code(err) != 2 {
			t.Errorf("%v: exit %d (%v), want 2", args, errs.Code(err), err)
		}
	}
}

// noLoops drops loop devices from a disk list.
func noLoops(disks []hw.Disk) []hw.Disk {
	var out []hw.Disk
	for _, d := range disks {
		if d.Kind != hw.KindLoop {
			out = append(out, d)
		}
	}
	return out
}

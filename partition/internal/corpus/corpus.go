// Package corpus holds what the tests of the planner (partition) and of the
// executor (partition/apply) share: the disko conformance corpus's expected
// results (partition/testdata/disko, measured with the real disko) and the
// partition tables sfdisk reads back. Only tests import it.
package corpus

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Expect is an example's .expect.json: the partitions, mount order and
// commands disko produced for it, measured with the real disko.
type Expect struct {
	Disks map[string]struct {
		Content struct {
			Type       string `json:"type"`
			Partitions []Part `json:"partitions"`
		} `json:"content"`
	} `json:"disks"`
	Mdadm map[string]struct {
		Content struct {
			Type       string `json:"type"`
			Partitions []Part `json:"partitions"`
		} `json:"content"`
	} `json:"mdadm"`
	MountOrder     []string   `json:"mountOrder"`
	CreateCommands [][]string `json:"createCommands"`
	MountCommands  [][]string `json:"mountCommands"`
}

// Part is one partition disko created, as sfdisk reported it.
type Part struct {
	Number           int             `json:"number"`
	GPTPartitionName string          `json:"gptPartitionName"`
	TypeGUID         string          `json:"typeGUID"`
	StartSector      json.RawMessage `json:"startSector"`
	EndSector        json.RawMessage `json:"endSector"`
	Device           string          `json:"device"`
}

// Sector returns a measured sector, or ok=false for an uncertain value.
func Sector(raw json.RawMessage) (uint64, bool) {
	var n uint64
	if json.Unmarshal(raw, &n) == nil {
		return n, true
	}
	return 0, false
}

// LoadExpect reads example name's .expect.json from the corpus in dir.
func LoadExpect(t testing.TB, dir, name string) *Expect {
	data, err := os.ReadFile(filepath.Join(dir, name+".expect.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e Expect
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatal(err)
	}
	return &e
}

// Sfdisk is the partition table `sfdisk --json` prints.
type Sfdisk struct {
	PartitionTable struct {
		Label      string `json:"label"`
		Partitions []struct {
			Node  string `json:"node"`
			Start uint64 `json:"start"`
			Size  uint64 `json:"size"`
			Type  string `json:"type"`
			Name  string `json:"name"`
			Attrs string `json:"attrs"`
			Boot  bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// SfdiskJSON runs `sfdisk --json args...` and decodes what it prints.
func SfdiskJSON(t testing.TB, args ...string) Sfdisk {
	t.Helper()
	out, err := exec.Command("sfdisk", append([]string{"--json"}, args...)...).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %q: %v", args, err)
	}
	var d Sfdisk
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

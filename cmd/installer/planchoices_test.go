package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
)

// twoHosts is a manifest with a one-disk and a two-disk host.
const twoHosts = `{"version":1,"hosts":{
 "laptop":{"system":"x86_64-linux","disko":{"disk":{"main":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{
   "ESP":{"size":"512M","type":"EF00","content":{"type":"filesystem","format":"vfat","mountpoint":"/boot"}},
   "root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}}}}},
 "server":{"system":"x86_64-linux","disko":{"disk":{
   "a":{"type":"disk","device":"/dev/vda","content":{"type":"gpt","partitions":{"root":{"size":"100%","content":{"type":"filesystem","format":"ext4","mountpoint":"/"}}}}},
   "b":{"type":"disk","device":"/dev/vdb","content":{"type":"gpt","partitions":{"data":{"size":"100%","content":{"type":"filesystem","format":"xfs","mountpoint":"/data"}}}}}}}}}}`

func TestPlanCmdline(t *testing.T) {
	manifest := writeFile(t, "manifest.json", twoHosts)
	for _, tc := range []struct {
		name      string
		cmdline   string
		disks     []string
		wantHost  string
		wantDisks map[string]string
		wantAuto  bool
		wantLabel string // first partition of the first disk
	}{
		{"one-disk host on a virtual disk", "nixlos.host=laptop nixlos.disk=auto nixlos.auto=1", []string{"8G"},
			"laptop", map[string]string{"main": "/dev/vda"}, true, "disk-main-ESP"},
		{"named disks", "nixlos.host=server nixlos.after=poweroff", []string{"a=8G", "b=8G"},
			"server", map[string]string{"a": "/dev/vda", "b": "/dev/vdb"}, false, "disk-a-root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			args := []string{"plan", "--manifest", manifest, "--cmdline", tc.cmdline, "--json"}
			for _, d := range tc.disks {
				args = append(args, "--disk", d)
			}
			if err := run(args, &out, &out); err != nil {
				t.Fatalf("plan: %v\n%s", err, out.String())
			}
			var got struct {
				Choices struct {
					Host  string            `json:"host"`
					Disks map[string]string `json:"disks"`
					Auto  bool              `json:"auto"`
					After string            `json:"after"`
				} `json:"choices"`
				Disks map[string]struct {
					Partitions []struct {
						Label string `json:"label"`
					} `json:"partitions"`
				} `json:"disks"`
			}
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("decode: %v\n%s", err, out.String())
			}
			c := got.Choices
			if c.Host != tc.wantHost || c.Auto != tc.wantAuto || len(c.Disks) != len(tc.wantDisks) {
				t.Fatalf("choices %+v", c)
			}
			for k, v := range tc.wantDisks {
				if c.Disks[k] != v {
					t.Errorf("disk %s = %q, want %q", k, c.Disks[k], v)
				}
			}
			first := ""
			for _, k := range []string{"main", "a"} {
				if d, ok := got.Disks[k]; ok && len(d.Partitions) > 0 {
					first = d.Partitions[0].Label
				}
			}
			if first != tc.wantLabel {
				t.Errorf("first partition %q, want %q", first, tc.wantLabel)
			}
		})
	}
}

func TestPlanCmdlineBadInput(t *testing.T) {
	manifest := writeFile(t, "manifest.json", twoHosts)
	for _, tc := range []struct{ name, cmdline, want string }{
		{"unknown host", "nixlos.host=nosuch", "use one of: laptop, server"},
		{"unknown parameter", "nixlos.hots=laptop", "did you mean nixlos.host"},
		{"no host, two in manifest", "nixlos.auto=1", "nixlos.host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run([]string{"plan", "--manifest", manifest, "--cmdline", tc.cmdline, "--disk", "8G", "--json"}, &out, &out)
			if errs.Code(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("exit %d, err %v; want exit 2 mentioning %q", errs.Code(err), err, tc.want)
			}
		})
	}
}

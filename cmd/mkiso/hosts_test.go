package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/flake/realflaketest"
	"github.com/nixlos/nixlos/internal/errs"
)

// TestHostsBrokenHost runs mkiso hosts and mkiso manifest on a flake whose
// hosts import the real disko and sops-nix modules, one of them with a
// broken disko layout: every host is listed, the broken one with its
// option, file and fix (exit 2); the manifest of a good host is exit 0.
func TestHostsBrokenHost(t *testing.T) {
	inputs := realflaketest.Inputs(t)
	dir := realflaketest.Flake(t, inputs, realflaketest.Fixture{Name: "fleet"})
	fixWords := []string{"hosts/broken/disko.nix:13", `type = "mdraid"`, "disko.devices.disk.disk1.content.partitions.mdadm.content"}

	var out, errOut bytes.Buffer
	err := runHosts([]string{dir}, &out, &errOut)
	if errs.Code(err) != 2 {
		t.Fatalf("mkiso hosts: exit %d (%v), want 2", errs.Code(err), err)
	}
	text := out.String()
	for _, want := range append([]string{"broken  -", "does not evaluate (see below)", "laptop  x86_64-linux", "server  x86_64-linux", "disk1=/dev/vda disk2=/dev/vdb",
		"broken: does not evaluate (option ", "attribute 'mdadm' missing"}, fixWords...) {
		if !strings.Contains(text, want) {
			t.Errorf("mkiso hosts output lacks %q:\n%s", want, text)
		}
	}
	for _, want := range append([]string{"1 of 3 hosts do not evaluate", "host broken", "these evaluate: laptop, server"}, fixWords...) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("mkiso hosts error lacks %q: %v", want, err)
		}
	}

	out.Reset()
	err = runHosts([]string{dir, "--json"}, &out, &errOut)
	if errs.Code(err) != 2 {
		t.Errorf("mkiso hosts --json: exit %d, want 2", errs.Code(err))
	}
	var js struct {
		Hosts []struct {
			Name       string `json:"name"`
			DiskLayout bool   `json:"diskLayout"`
			Error      *struct {
				Host, Option, File, Message, Fix string
			} `json:"error"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal(out.Bytes(), &js); err != nil {
		t.Fatalf("hosts --json: %v\n%s", err, out.String())
	}
	var names []string
	for _, h := range js.Hosts {
		names = append(names, h.Name)
		if (h.Error != nil) != (h.Name == "broken") || (h.Name != "broken") != h.DiskLayout {
			t.Errorf("hosts --json: %+v", h)
		}
		if h.Error != nil && (h.Error.File != "hosts/broken/disko.nix:13" || !strings.Contains(h.Error.Fix, "mdraid")) {
			t.Errorf("hosts --json error: %+v", *h.Error)
		}
	}
	if !reflect.DeepEqual(names, []string{"broken", "laptop", "server"}) {
		t.Errorf("hosts --json names %v", names)
	}

	out.Reset()
	if err := runManifest([]string{dir, "--host", "laptop"}, &out, &errOut); err != nil {
		t.Fatalf("mkiso manifest --host laptop: %v", err)
	}
	var m struct {
		Hosts map[string]json.RawMessage `json:"hosts"`
	}
	if err := json.Unmarshal(out.Bytes(), &m); err != nil || len(m.Hosts) != 1 || m.Hosts["laptop"] == nil {
		t.Errorf("manifest --host laptop: %v %s", err, out.String())
	}

	out.Reset()
	err = runManifest([]string{dir, "--host", "broken"}, &out, &errOut)
	if errs.Code(err) != 2 || !strings.Contains(err.Error(), "host broken") || !strings.Contains(err.Error(), "hosts/broken/disko.nix:13") || out.Len() != 0 {
		t.Errorf("manifest --host broken: exit %d: %v (stdout %q)", errs.Code(err), err, out.String())
	}

	out.Reset()
	err = runManifest([]string{dir}, &out, &errOut)
	if errs.Code(err) != 2 || !strings.Contains(err.Error(), "host broken") {
		t.Errorf("manifest of all hosts: exit %d: %v", errs.Code(err), err)
	}
	m.Hosts = nil
	if err := json.Unmarshal(out.Bytes(), &m); err != nil || len(m.Hosts) != 2 {
		t.Errorf("manifest of all hosts holds %d hosts (want the 2 that evaluate): %v", len(m.Hosts), err)
	}
}

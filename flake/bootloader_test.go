package flake

import (
	"context"
	"testing"

	"github.com/nixlos/nixlos/flake/realflaketest"
)

// TestRealFlakesBootLoader: the manifest exports each host's boot loader
// (boot.loader.*) for the installer's pre-flight gate.
func TestRealFlakesBootLoader(t *testing.T) {
	inputs := realflaketest.Inputs(t)
	dir := realflaketest.Flake(t, inputs, realflaketest.Fixture{Name: "workstation", Disko: realflaketest.DiskoVersions[0]})
	_, m, err := Hosts(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{"btrfs": "systemd-boot", "legacy": "grub"} {
		if got := m.Hosts[host].BootLoader; got != want {
			t.Errorf("%s: bootLoader %q, want %q", host, got, want)
		}
	}
}

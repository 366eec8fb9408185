package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"

	"reflect"
	"testing"

	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/install"
)

func TestConsoleNames(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    []string
	}{
		{"console=ttyS0,115200n8 console=tty0 quiet", []string{"ttyS0", "tty0"}},
		{"console=ttyS0 console=ttyS0,9600", []string{"ttyS0"}},
		{"quiet nixlos.host=x", nil},
		{"console= console=../etc/passwd console=hvc0", []string{"hvc0"}},
	} {
		if got := consoleNames(tc.cmdline); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("consoleNames(%q) = %v, want %v", tc.cmdline, got, tc.want)
		}
	}
}

func TestCmdlineValue(t *testing.T) {
	for _, tc := range []struct {
		cmdline, key, want string
		ok                 bool
	}{
		{"nixlos.after=poweroff", "nixlos.after", "poweroff", true},
		{"nixlos.after=reboot nixlos.after=shell", "nixlos.after", "shell", true},
		{"nixlos.afterx=1", "nixlos.after", "", false},
		{"", "nixlos.after", "", false},
	} {
		got, ok := cmdlineValue(tc.cmdline, tc.key)
		if got != tc.want || ok != tc.ok {
			t.Errorf("cmdlineValue(%q) = %q,%v want %q,%v", tc.cmdline, got, ok, tc.want, tc.ok)
		}
	}
}

func TestOpenConsolesFallback(t *testing.T) {
	var buf bytes.Buffer
	w, done := openConsoles([]string{"no-such-console-xyz"}, &buf)
	defer done()
	w.Write([]byte("ready\n"))
	if buf.String() != "ready\n" {
		t.Errorf("fallback got %q", buf.String())
	}
}

// TestMenuLines drives the line-based menu: a bad host name is asked
// again, a number picks a host, then the disk is typed without /dev/.
func TestMenuLines(t *testing.T) {
	hosts := []bootcfg.Host{{Name: "laptop", Disks: []string{"main"}}, {Name: "server", Disks: []string{"disk1", "disk2"}}}
	disks := []hw.Disk{{Name: "vda", Path: "/dev/vda", Kind: hw.KindDisk, SizeBytes: 8 << 30}}
	var out bytes.Buffer
	b := &boot{out: &out, in: bufio.NewReader(strings.NewReader("nosuch\n1\nvda\n"))}
	var c bootcfg.Cmdline
	ch, err := bootcfg.Choose(hosts, c, disks)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.menu(&c, ch, hosts, disks); err != nil {
		t.Fatal(err)
	}
	if c.Host != "laptop" || !strings.Contains(out.String(), `no host "nosuch"`) {
		t.Fatalf("host %q, output:\n%s", c.Host, out.String())
	}
	ch, err = bootcfg.Choose(hosts, c, disks)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.menu(&c, ch, hosts, disks); err != nil {
		t.Fatal(err)
	}
	if c.Disk != "/dev/vda" {
		t.Errorf("disk %q", c.Disk)
	}
	ch, err = bootcfg.Choose(hosts, c, disks)
	if err != nil || !ch.Decided() || ch.Disks["main"] != "/dev/vda" {
		t.Errorf("after the menu: %+v, %v", ch, err)
	}
	// End of input is an error, not a loop.
	b.in = bufio.NewReader(strings.NewReader(""))
	c = bootcfg.Cmdline{}
	ch, _ = bootcfg.Choose(hosts, c, disks)
	if err := b.menu(&c, ch, hosts, disks); err == nil {
		t.Error("menu at end of input: no error")
	}
}

func TestConfirmTyped(t *testing.T) {
	p := &install.Plan{Host: "laptop", Disks: map[string]string{"main": "/dev/vda"}}
	for _, tc := range []struct {
		in string
		ok bool
	}{{"vda\n", true}, {"/dev/vda\n", true}, {"yes\n", false}, {"", false}} {
		var out bytes.Buffer
		b := &boot{out: &out, in: bufio.NewReader(strings.NewReader(tc.in))}
		if err := b.confirm(p); (err == nil) != tc.ok {
			t.Errorf("confirm(%q) = %v", tc.in, err)
		}
	}
}

// TestMergeServerSettings: per-MAC settings from nixlos.server fill what
// the command line left open; the command line wins. The HTTP server is a
// stand-in for `mkiso serve` (httptest, same /v1/machine protocol).
func TestMergeServerSettings(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mac := r.URL.Query().Get("mac"); {
		case r.URL.Path != "/v1/machine":
			http.NotFound(w, r)
		case mac == "52:54:00:12:34:56":
			fmt.Fprint(w, `{"mac":"52:54:00:12:34:56","host":"server","disk":"auto","after":"poweroff","auto":true,"key":true,"installed":false}`)
		case mac == "52:54:00:12:34:57": // the map's per-disk form
			fmt.Fprint(w, `{"mac":"52:54:00:12:34:57","host":"server","disks":{"disk1":"/dev/vda","disk2":"/dev/vdb"},"after":"poweroff","auto":true,"key":true,"installed":false}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		raw, mac   string
		host, disk string
		disks      string // sorted key=dev list
		after      bootcfg.After
		auto       bool
	}{
		{"nixlos.server=" + srv.URL, "52:54:00:12:34:56", "server", "auto", "", "poweroff", true},
		{"nixlos.server=" + srv.URL + " nixlos.host=laptop nixlos.after=shell nixlos.disk=/dev/vdb", "52:54:00:12:34:56", "laptop", "/dev/vdb", "", "shell", true},
		{"nixlos.server=" + srv.URL, "52:54:00:12:34:57", "server", "", "disk1=/dev/vda,disk2=/dev/vdb", "poweroff", true},
		{"nixlos.server=" + srv.URL + " nixlos.disk.disk1=/dev/vdc", "52:54:00:12:34:57", "server", "", "disk1=/dev/vdc", "poweroff", true}, // command line wins
		{"nixlos.server=" + srv.URL, "52:54:00:00:00:01", "", "", "", "reboot", false},                                                      // not in the map: menu
	} {
		c, err := bootcfg.Parse(tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		b := &boot{out: &out, raw: tc.raw, mac: tc.mac}
		if err := b.merge(context.Background(), &c); err != nil {
			t.Fatalf("%s: %v", tc.raw, err)
		}
		var disks []string
		for _, k := range slices.Sorted(maps.Keys(c.Disks)) {
			disks = append(disks, k+"="+c.Disks[k])
		}
		if c.Host != tc.host || c.Disk != tc.disk || strings.Join(disks, ",") != tc.disks || c.After != tc.after || c.Auto != tc.auto {
			t.Errorf("%s (%s): host=%q disk=%q disks=%v after=%q auto=%v", tc.raw, tc.mac, c.Host, c.Disk, disks, c.After, c.Auto)
		}
	}
}

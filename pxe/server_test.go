package pxe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/pxe/wire"
)

const testMAC = "52:54:00:12:34:56"

// testKey is a stand-in age identity (format only; never a real secret).
const testKey = "AGE-SECRET-KEY-1TESTTESTTESTTESTTESTTESTTESTTESTTESTTESTTESTTESTTESTTESTQQQQQQ\n"

// eventLog collects events for assertions.
type eventLog struct {
	mu  sync.Mutex
	evs []Event
	buf bytes.Buffer
}

func (l *eventLog) sink(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, e)
	fmt.Fprintf(&l.buf, "%s %s %s %s\n", e.MAC, e.Host, e.State, e.Message)
}

func (l *eventLog) states(mac string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.evs {
		if e.MAC == mac {
			out = append(out, e.State)
		}
	}
	return out
}

func (l *eventLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// testBundle writes a small bundle directory (fake kernel/initrd bytes, real
// iPXE binaries copied in by OpenBundle).
func testBundle(t testing.TB, initrdSize int) *Bundle {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, KernelFile), []byte("not really a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, initrdSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(dir, InitrdFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Files(t, filepath.Join(IPXEDir, BIOSBootFile))
	b, err := OpenBundle(dir, "console=ttyS0")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type testServer struct {
	*Server
	events *eventLog
	key    string
	mapf   string
}

// startTestServer runs a server on 127.0.0.1 with ephemeral ports.
func startTestServer(t testing.TB, mapText string, mutate func(*Config)) *testServer {
	t.Helper()
	dir := t.TempDir()
	mapf := filepath.Join(dir, "map.toml")
	if err := os.WriteFile(mapf, []byte(mapText), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := LoadMap(mapf)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key.txt")
	if err := os.WriteFile(key, []byte(testKey), 0o600); err != nil {
		t.Fatal(err)
	}
	ev := &eventLog{}
	tr, _ := NewTracker(ev.sink, filepath.Join(dir, "state.json"))
	logb := &lockedWriter{w: &bytes.Buffer{}}
	cfg := Config{Addr: netip.MustParseAddr("127.0.0.1"), Bundle: testBundle(t, 1<<20), Map: m, MapFile: mapf,
		AgeKey: key, Tracker: tr, Log: logb}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		if strings.Contains(logb.String(), "AGE-SECRET-KEY") || strings.Contains(ev.text(), "AGE-SECRET-KEY") {
			t.Errorf("the age key appeared in the log or events")
		}
	})
	return &testServer{Server: s, events: ev, key: key, mapf: mapf}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.(*bytes.Buffer).String()
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func get(t testing.TB, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const keyMap = "[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"server\"\ndisk = \"auto\"\nafter = \"poweroff\"\nkey = true\n" +
	"[[machine]]\nmac = \"52:54:00:00:00:02\"\nhost = \"nokey\"\n"

func tokenOf(t testing.TB, script string) string {
	t.Helper()
	for _, f := range strings.Fields(script) {
		if v, ok := strings.CutPrefix(f, "nixlos.token="); ok {
			return v
		}
	}
	t.Fatalf("no nixlos.token in script:\n%s", script)
	return ""
}

func TestBootScriptPerMAC(t *testing.T) {
	s := startTestServer(t, keyMap, nil)
	base := s.HTTPBase()
	code, body := get(t, base+"/boot.ipxe?mac=52-54-00-12-34-56")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	for _, want := range []string{"#!ipxe\n", "kernel " + base + "/vmlinuz initrd=initrd console=ttyS0 ",
		"nixlos.server=" + base, "nixlos.host=server", "nixlos.auto=1", "nixlos.disk=auto", "nixlos.after=poweroff",
		"initrd --name initrd " + base + "/initrd\n", "\nboot\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("script lacks %q:\n%s", want, body)
		}
	}
	tok1 := tokenOf(t, body)
	_, body2 := get(t, base+"/boot.ipxe?mac="+testMAC)
	if tok2 := tokenOf(t, body2); tok2 == tok1 || len(tok2) != 32 {
		t.Errorf("second boot token %q not fresh (first %q)", tok2, tok1)
	}
	// Without mac: a chain script asking iPXE for its MAC.
	_, chain := get(t, base+"/boot.ipxe")
	if !strings.Contains(chain, "chain "+base+"/boot.ipxe?mac=${net0/mac}") {
		t.Errorf("chain script wrong:\n%s", chain)
	}
	// Unknown MAC, menu policy: no host, no token.
	_, menu := get(t, base+"/boot.ipxe?mac=52:54:00:99:99:99")
	if strings.Contains(menu, "nixlos.host=") || strings.Contains(menu, "nixlos.token=") || !strings.Contains(menu, "nixlos.server=") {
		t.Errorf("menu script wrong:\n%s", menu)
	}
	if code, _ := get(t, base+"/boot.ipxe?mac=zz"); code != 400 {
		t.Errorf("bad mac: status %d, want 400", code)
	}
}

func TestUnknownIgnore(t *testing.T) {
	s := startTestServer(t, keyMap, func(c *Config) { c.Unknown = UnknownIgnore })
	if code, _ := get(t, s.HTTPBase()+"/boot.ipxe?mac=52:54:00:99:99:99"); code != 404 {
		t.Errorf("unknown MAC under ignore: status %d, want 404", code)
	}
}

func TestKeyOncePerToken(t *testing.T) {
	s := startTestServer(t, keyMap, nil)
	base := s.HTTPBase()
	ctx := context.Background()
	_, script := get(t, base+"/boot.ipxe?mac="+testMAC)
	tok := tokenOf(t, script)

	if _, err := wire.FetchKey(ctx, nil, base, testMAC, "00000000000000000000000000000000"); err == nil {
		t.Fatal("wrong token got the key")
	}
	key, err := wire.FetchKey(ctx, nil, base, testMAC, tok)
	if err != nil {
		t.Fatalf("first key request: %v", err)
	}
	if string(key) != testKey {
		t.Fatal("served key differs from the key file")
	}
	_, err = wire.FetchKey(ctx, nil, base, testMAC, tok)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("second request with the same token: %v, want 403 already used", err)
	}
	if strings.Contains(err.Error(), "AGE-SECRET") {
		t.Fatal("key in error")
	}
	st := s.events.states(testMAC)
	if st[len(st)-1] != wire.StateRefused {
		t.Errorf("last event %q, want refused; events %v", st[len(st)-1], st)
	}
	// A new boot gives a new token that works once.
	_, script = get(t, base+"/boot.ipxe?mac="+testMAC)
	if _, err := wire.FetchKey(ctx, nil, base, testMAC, tokenOf(t, script)); err != nil {
		t.Fatalf("key with a fresh token: %v", err)
	}
}

func TestKeyRefusedUnmappedOrDisabled(t *testing.T) {
	s := startTestServer(t, keyMap, nil)
	base := s.HTTPBase()
	ctx := context.Background()
	// MAC not in the map (it may still boot the menu and get no token).
	_, _ = get(t, base+"/boot.ipxe?mac=52:54:00:99:99:99")
	if _, err := wire.FetchKey(ctx, nil, base, "52:54:00:99:99:99", ""); err == nil || !strings.Contains(err.Error(), "not in the map") {
		t.Fatalf("unmapped MAC: %v", err)
	}
	// Mapped, but key not enabled.
	_, script := get(t, base+"/boot.ipxe?mac=52:54:00:00:00:02")
	if _, err := wire.FetchKey(ctx, nil, base, "52:54:00:00:00:02", tokenOf(t, script)); err == nil || !strings.Contains(err.Error(), "not enabled") {
		t.Fatalf("key-disabled host: %v", err)
	}
	// The operator disables the key for "server" in the map file: refused live.
	_, script = get(t, base+"/boot.ipxe?mac="+testMAC)
	disabled := strings.Replace(keyMap, "key = true", "key = false", 1)
	if err := os.WriteFile(s.mapf, []byte(disabled), 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(s.mapf, future, future)
	if _, err := wire.FetchKey(ctx, nil, base, testMAC, tokenOf(t, script)); err == nil || !strings.Contains(err.Error(), "not enabled") {
		t.Fatalf("after disabling in the map: %v", err)
	}
	if n := strings.Count(s.events.text(), " refused "); n != 3 {
		t.Errorf("%d refused events, want 3:\n%s", n, s.events.text())
	}
}

func TestStatusAndBootOnce(t *testing.T) {
	s := startTestServer(t, keyMap, nil)
	base := s.HTTPBase()
	ctx := context.Background()
	get(t, base+"/boot.ipxe?mac="+testMAC)
	p := 40
	if err := wire.ReportStatus(ctx, nil, base, wire.Status{MAC: testMAC, Host: "evil", State: wire.StateInstalling, Message: "partitioning", Progress: &p}); err != nil {
		t.Fatal(err)
	}
	if err := wire.ReportStatus(ctx, nil, base, wire.Status{MAC: testMAC, State: "bogus"}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("bogus state accepted: %v", err)
	}
	if err := wire.ReportStatus(ctx, nil, base, wire.Status{MAC: testMAC, State: wire.StateComplete, Message: "install complete host=server"}); err != nil {
		t.Fatal(err)
	}
	_, script := get(t, base+"/boot.ipxe?mac="+testMAC)
	if !strings.Contains(script, "sanboot --no-describe --drive 0x80") || strings.Contains(script, "kernel") {
		t.Fatalf("after complete, script is not a local boot:\n%s", script)
	}
	want := []string{wire.StateBooting, wire.StateInstalling, wire.StateComplete, wire.StateLocalBoot}
	if got := s.events.states(testMAC); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("states %v, want %v", got, want)
	}
	snap := s.Tracker().Snapshot()
	if snap[0].Host != "server" {
		t.Errorf("host taken from the client: %+v", snap[0])
	}
	// The installed set survives a restart through the state file.
	tr2, err := NewTracker(nil, s.cfg.Tracker.StateFile)
	if err != nil || !tr2.Installed(testMAC) {
		t.Fatalf("state file did not keep the installed MAC: %v", err)
	}
}

func TestFileRangeRequests(t *testing.T) {
	s := startTestServer(t, keyMap, nil)
	want, _ := os.ReadFile(filepath.Join(s.cfg.Bundle.Dir, InitrdFile))
	req, _ := http.NewRequest("GET", s.HTTPBase()+"/initrd", nil)
	req.Header.Set("Range", "bytes=1000-1999")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, want[1000:2000]) {
		t.Fatalf("range: status %d, %d bytes", resp.StatusCode, len(got))
	}
	code, full := get(t, s.HTTPBase()+"/initrd")
	if code != 200 || full != string(want) {
		t.Fatalf("full initrd: status %d, %d bytes", code, len(full))
	}
	for _, bad := range []string{"/..%2fetc%2fpasswd", "/%2e%2e/x", "/nonexistent", "/v1"} {
		if code, _ := get(t, s.HTTPBase()+bad); code != 404 && code != 400 && code != 405 {
			t.Errorf("%s: status %d", bad, code)
		}
	}
}

func TestTrackerBounded(t *testing.T) {
	n := 0
	tr, _ := NewTracker(func(Event) { n++ }, "")
	for i := range MaxMachines + 100 {
		tr.Record(fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), "", wire.StateDHCP, "x", -1)
	}
	if got := len(tr.Snapshot()); got != MaxMachines || n != MaxMachines {
		t.Fatalf("table %d rows, %d events; want %d", got, n, MaxMachines)
	}
	tr.Record("02:00:00:00:00:01", "", wire.StateInstalling, "known MAC still updates", -1)
	if n != MaxMachines+1 {
		t.Fatal("update of a known MAC dropped")
	}
}

func TestMachineEndpoint(t *testing.T) {
	s := startTestServer(t, keyMap, nil)
	ctx := context.Background()
	mi, err := wire.FetchMachine(ctx, nil, s.HTTPBase(), "52-54-00-12-34-56")
	if err != nil {
		t.Fatal(err)
	}
	want := wire.MachineInfo{MAC: testMAC, Host: "server", Disk: "auto", After: "poweroff", Auto: true, Key: true}
	if !reflect.DeepEqual(mi, want) {
		t.Fatalf("got %+v, want %+v", mi, want)
	}
	if _, err := wire.FetchMachine(ctx, nil, s.HTTPBase(), "52:54:00:99:99:99"); !errors.Is(err, wire.ErrUnknownMachine) {
		t.Fatalf("unknown MAC: %v", err)
	}
	wire.ReportStatus(ctx, nil, s.HTTPBase(), wire.Status{MAC: testMAC, State: wire.StateComplete})
	if mi, _ := wire.FetchMachine(ctx, nil, s.HTTPBase(), testMAC); !mi.Installed {
		t.Fatal("installed flag not set after complete")
	}
}

// TestBootScriptPerDisk: the map's per-disk form becomes one
// nixlos.disk.<key>= kernel parameter per disk in the boot script (in key
// order) and the disks object of /v1/machine.
func TestBootScriptPerDisk(t *testing.T) {
	s := startTestServer(t, "[[machine]]\nmac = \""+testMAC+"\"\nhost = \"server\"\n"+
		"disks = { disk2 = \"/dev/vdb\", disk1 = \"/dev/disk/by-id/virtio-a\" }\n", nil)
	_, body := get(t, s.HTTPBase()+"/boot.ipxe?mac="+testMAC)
	want := " nixlos.host=server nixlos.auto=1 nixlos.disk.disk1=/dev/disk/by-id/virtio-a nixlos.disk.disk2=/dev/vdb nixlos.token="
	if !strings.Contains(body, want) || strings.Contains(body, "nixlos.disk=") {
		t.Fatalf("script lacks %q (or has nixlos.disk=):\n%s", want, body)
	}
	mi, err := wire.FetchMachine(context.Background(), nil, s.HTTPBase(), testMAC)
	if err != nil {
		t.Fatal(err)
	}
	if wantD := map[string]string{"disk1": "/dev/disk/by-id/virtio-a", "disk2": "/dev/vdb"}; !reflect.DeepEqual(mi.Disks, wantD) || mi.Disk != "" {
		t.Fatalf("machine info disk %q disks %v, want disks %v", mi.Disk, mi.Disks, wantD)
	}
}

// TestLocalBootScript: BIOS hands drive 0x80 to the firmware; UEFI chains
// the bundle's GRUB local boot image (relative to the script's URL); every
// failure exits with an error, so the firmware tries its next boot option.
func TestLocalBootScript(t *testing.T) {
	s := LocalBootScript(testMAC)
	want := "#!ipxe\necho nixlos: " + testMAC + " is installed, booting from local disk\n" +
		"iseq ${platform} efi && goto efi ||\n" +
		"sanboot --no-describe --drive 0x80 || exit 1\n" +
		":efi\n" +
		"chain --autofree localboot.efi || exit 1\n"
	if s != want {
		t.Fatalf("LocalBootScript:\n%s\nwant:\n%s", s, want)
	}
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if strings.HasSuffix(l, "|| exit") || strings.HasSuffix(l, "exit 0") {
			t.Errorf("%q: exit 0 sends UEFI firmware to its boot manager instead of the next boot option", l)
		}
	}
}

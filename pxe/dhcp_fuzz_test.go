package pxe

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/nixlos/nixlos/pxe/wire"
)

// FuzzDHCPReply feeds arbitrary packets to the proxy, proxy-4011 and full
// DHCP reply logic: no panic, and any reply is a well-formed BOOTREPLY for
// the same transaction.
func FuzzDHCPReply(f *testing.F) {
	b := testBundle(f, 64)
	m, _ := ParseMap([]byte(keyMap), "m")
	rg, _ := ParseRange("10.99.0.100-10.99.0.110")
	var servers []*Server
	for _, r := range []*Range{nil, &rg} {
		s, err := New(Config{Addr: netip.MustParseAddr("10.99.0.1"), Bundle: b, Map: m, Range: r})
		if err != nil {
			f.Fatal(err)
		}
		s.httpURL = "http://10.99.0.1:80"
		servers = append(servers, s)
	}
	for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest} {
		f.Add(pxeRequest(f, mt).ToBytes())
	}
	f.Add([]byte{1, 1, 6, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}
		for i, s := range servers {
			for _, port4011 := range []bool{false, true} {
				if port4011 && i == 1 {
					continue
				}
				r := s.dhcpReply(req, port4011)
				if r == nil {
					continue
				}
				if r.OpCode != dhcpv4.OpcodeBootReply || r.TransactionID != req.TransactionID {
					t.Fatalf("bad reply %v to %v", r, req)
				}
				if _, err := dhcpv4.FromBytes(r.ToBytes()); err != nil {
					t.Fatalf("reply does not parse: %v", err)
				}
			}
		}
	})
}

func TestEventSinks(t *testing.T) {
	var jb, lb bytes.Buffer
	tr, _ := NewTracker(nil, "")
	tr.Now = func() time.Time { return time.Date(2026, 11, 25, 5, 0, 0, 0, time.UTC) }
	js, ls := JSONSink(&jb), LineSink(&lb)
	tr.SetSink(func(e Event) { js(e); ls(e) })
	tr.Record(testMAC, "server", wire.StateInstalling, "partitioning", 40)
	var obj map[string]any
	if err := json.Unmarshal(jb.Bytes(), &obj); err != nil {
		t.Fatal(err)
	}
	if len(obj) != 5 || obj["time"] != "2026-11-25T05:00:00Z" || obj["mac"] != testMAC || obj["host"] != "server" ||
		obj["state"] != "installing" || obj["message"] != "partitioning" {
		t.Fatalf("JSON event %s", jb.String())
	}
	if got := lb.String(); !strings.Contains(got, testMAC) || !strings.Contains(got, "installing") || !strings.Contains(got, "40%") {
		t.Fatalf("line %q", got)
	}
	var tb bytes.Buffer
	TableSink(&tb, tr, "serving on x")(Event{})
	if !strings.Contains(tb.String(), "MAC") || !strings.Contains(tb.String(), "partitioning") || !strings.HasPrefix(tb.String(), "\x1b[H") {
		t.Fatalf("table %q", tb.String())
	}
}

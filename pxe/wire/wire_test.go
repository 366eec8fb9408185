package wire

import (
	"bytes"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/hw"
)

func FuzzDecodeStatus(f *testing.F) {
	f.Add([]byte(`{"mac":"52:54:00:12:34:56","host":"server","state":"installing","message":"x","progress":40}`))
	f.Add([]byte(`{"mac":"52:54:00:12:34:56","state":"complete"}`))
	f.Add([]byte(`{"mac":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := DecodeStatus(bytes.NewReader(data))
		if err != nil {
			return
		}
		if c, err := CanonicalMAC(st.MAC); err != nil || c != st.MAC {
			t.Fatalf("accepted bad MAC %q", st.MAC)
		}
		if !slices.Contains(ReportableStates, st.State) {
			t.Fatalf("accepted bad state %q", st.State)
		}
		if st.Progress != nil && (*st.Progress < 0 || *st.Progress > 100) {
			t.Fatalf("accepted progress %d", *st.Progress)
		}
		if strings.ContainsAny(st.Message, "\n\r\x1b") || len(st.Message) > 1024 {
			t.Fatalf("message not sanitised: %q", st.Message)
		}
	})
}

func FuzzQueryMAC(f *testing.F) {
	f.Add("mac=52:54:00:12:34:56&token=abc")
	f.Add("mac=52-54-00-12-34-56")
	f.Add("mac=%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		mac, err := QueryMAC(q)
		if err != nil {
			return
		}
		if c, err := CanonicalMAC(mac); err != nil || c != mac || len(mac) != 17 {
			t.Fatalf("QueryMAC returned %q", mac)
		}
	})
}

func FuzzDecodeMachineInfo(f *testing.F) {
	f.Add([]byte(`{"mac":"52:54:00:12:34:56","host":"server","disk":"auto","after":"poweroff","auto":true,"key":true,"installed":false}`))
	f.Add([]byte(`{"mac":"52:54:00:12:34:56","host":"a b"}`))
	f.Add([]byte(`{"mac":"52:54:00:12:34:56","host":"x","disk":"/dev/sda; rm"}`))
	f.Add([]byte(`{"mac":"52:54:00:12:34:56","host":"x","disks":{"disk1":"/dev/vda","disk 2":"/dev/vdb"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		mi, err := DecodeMachineInfo(bytes.NewReader(data))
		if err != nil {
			return
		}
		if c, err := CanonicalMAC(mi.MAC); err != nil || c != mi.MAC || !ValidHost(mi.Host) {
			t.Fatalf("accepted %+v", mi)
		}
		if strings.ContainsAny(mi.Disk, " \t\n\"'\\") || (mi.Disk != "" && mi.Disk != "auto" && !strings.HasPrefix(mi.Disk, "/dev/")) {
			t.Fatalf("accepted disk %q", mi.Disk)
		}
		for k, v := range mi.Disks {
			if !ValidDiskKey(k) || CheckDiskDev(v) != nil {
				t.Fatalf("accepted disks %q = %q", k, v)
			}
		}
		if mi.After != "" && !slices.Contains(ValidAfter, mi.After) {
			t.Fatalf("accepted after %q", mi.After)
		}
	})
}

// FuzzDecodeDiscovery: never panics; accepted reports have a canonical MAC,
// a known firmware and printable vendor/product.
func FuzzDecodeDiscovery(f *testing.F) {
	f.Add(`{"mac":"52:54:00:00:00:01","vendor":"QEMU","product":"Standard PC","report":{"firmware":"uefi","memory":{"totalBytes":2147483648},"disks":[{"name":"vda","kind":"disk","sizeBytes":8589934592,"bus":"virtio","serial":"S1"}]}}`)
	f.Add(`{"mac":"x","report":{"firmware":"bios"}}`)
	f.Add(`{"mac":"52:54:00:00:00:01","vendor":"\u0000\u007f","report":{"firmware":"uefi","disks":null}}`)
	f.Fuzz(func(t *testing.T, s string) {
		d, err := DecodeDiscovery(strings.NewReader(s))
		if err != nil {
			return
		}
		if c, err := CanonicalMAC(d.MAC); err != nil || c != d.MAC {
			t.Fatalf("MAC %q accepted", d.MAC)
		}
		if d.Report.Firmware != hw.UEFI && d.Report.Firmware != hw.BIOS {
			t.Fatalf("firmware %q accepted", d.Report.Firmware)
		}
		if strings.ContainsFunc(d.Vendor+d.Product, func(r rune) bool { return r < 0x20 || r == 0x7f }) || len(d.Vendor) > 128 {
			t.Fatalf("vendor %q product %q", d.Vendor, d.Product)
		}
		_ = d.Summary().String()
	})
}

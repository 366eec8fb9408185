package pxe

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

func TestBootFileByArch(t *testing.T) {
	const base, mac = "http://10.0.0.1:80", "52:54:00:12:34:56"
	tests := []struct {
		name      string
		vendor    string
		arch      []iana.Arch
		userClass string
		opt175    bool
		kind      ClientKind
		file      string
	}{
		{"plain dhcp", "", nil, "", false, NotPXE, ""},
		{"linux udhcpc", "udhcp 1.35.0", nil, "", false, NotPXE, ""},
		{"bios pxe", "PXEClient:Arch:00000:UNDI:002001", []iana.Arch{iana.INTEL_X86PC}, "", false, PXEBIOS, "undionly.kpxe"},
		{"bios pxe without opt93", "PXEClient", nil, "", false, PXEBIOS, "undionly.kpxe"},
		{"uefi x64 (7)", "PXEClient:Arch:00007:UNDI:003016", []iana.Arch{iana.EFI_X86_64}, "", false, PXEEFI, "ipxe.efi"},
		{"uefi x64 (9)", "PXEClient:Arch:00009:UNDI:003016", []iana.Arch{iana.EFI_BC}, "", false, PXEEFI, "ipxe.efi"},
		{"uefi http", "HTTPClient:Arch:00016:UNDI:003001", []iana.Arch{iana.EFI_X86_64_HTTP}, "", false, HTTPEFI, base + "/ipxe.efi"},
		{"uefi ia32", "PXEClient:Arch:00006:UNDI:003016", []iana.Arch{iana.EFI_IA32}, "", false, Unsupported, ""},
		{"arm64", "PXEClient:Arch:00011:UNDI:003016", []iana.Arch{iana.EFI_ARM64}, "", false, Unsupported, ""},
		{"ipxe user class", "PXEClient:Arch:00000:UNDI:002001", []iana.Arch{iana.INTEL_X86PC}, "iPXE", false, IPXE, base + "/boot.ipxe?mac=" + mac},
		{"ipxe option 175", "PXEClient:Arch:00007:UNDI:003010", []iana.Arch{iana.EFI_X86_64}, "", true, IPXE, base + "/boot.ipxe?mac=" + mac},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hw, _ := net.ParseMAC(mac)
			mods := []dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover)}
			if tc.vendor != "" {
				mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(tc.vendor)))
			}
			if tc.arch != nil {
				mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClientArch(tc.arch...)))
			}
			if tc.userClass != "" {
				mods = append(mods, dhcpv4.WithUserClass(tc.userClass, false))
			}
			if tc.opt175 {
				mods = append(mods, dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e}))
			}
			m, err := dhcpv4.New(mods...)
			if err != nil {
				t.Fatal(err)
			}
			// Round-trip through the wire format, as the server sees it.
			m, err = dhcpv4.FromBytes(m.ToBytes())
			if err != nil {
				t.Fatal(err)
			}
			k := Classify(m)
			if k != tc.kind {
				t.Fatalf("kind %v, want %v", k, tc.kind)
			}
			if got := BootFile(k, base, mac); got != tc.file {
				t.Fatalf("boot file %q, want %q", got, tc.file)
			}
		})
	}
}

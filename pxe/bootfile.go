package pxe

import (
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// ClientKind is what kind of network-boot client sent a DHCP request.
type ClientKind int

// Client kinds, from the DHCP request's options.
const (
	NotPXE      ClientKind = iota // an ordinary DHCP client (e.g. the installer's own)
	PXEBIOS                       // legacy PXE ROM, arch 0
	PXEEFI                        // UEFI PXE, x86-64 (arch 7 or 9)
	HTTPEFI                       // UEFI HTTP boot, x86-64 (arch 16)
	IPXE                          // already running iPXE (user class "iPXE" or option 175)
	Unsupported                   // PXE, but an architecture we have no binary for
)

func (k ClientKind) String() string {
	return [...]string{"dhcp", "pxe-bios", "pxe-efi", "http-efi", "ipxe", "unsupported"}[k]
}

// optIPXEEncap is iPXE's encapsulated option space, present in every iPXE request.
const optIPXEEncap = 175

// Classify tells the client kind of a DHCP request from option 60 (vendor
// class), option 77 (user class), option 93 (client arch) and option 175.
func Classify(m *dhcpv4.DHCPv4) ClientKind {
	vc := m.ClassIdentifier()
	pxe := strings.HasPrefix(vc, "PXEClient")
	httpc := strings.HasPrefix(vc, "HTTPClient")
	if !pxe && !httpc {
		return NotPXE
	}
	isIPXE := m.Options.Has(dhcpv4.GenericOptionCode(optIPXEEncap))
	for _, uc := range m.UserClass() {
		if uc == "iPXE" {
			isIPXE = true
		}
	}
	if isIPXE {
		return IPXE
	}
	arch := iana.INTEL_X86PC
	if a := m.ClientArch(); len(a) > 0 {
		arch = a[0]
	}
	return ArchKind(arch, httpc)
}

// ArchKind maps a client architecture (option 93) to a client kind.
// httpClient is true when the vendor class is HTTPClient.
func ArchKind(arch iana.Arch, httpClient bool) ClientKind {
	switch arch {
	case iana.INTEL_X86PC:
		if httpClient {
			return Unsupported
		}
		return PXEBIOS
	case iana.EFI_X86_64, iana.EFI_BC:
		if httpClient {
			return HTTPEFI
		}
		return PXEEFI
	case iana.EFI_X86_64_HTTP:
		return HTTPEFI
	}
	return Unsupported
}

// BootFile returns the boot file name for a client kind: a TFTP path for PXE
// ROMs, an http URL (under httpBase, "http://ADDR:PORT") for HTTP boot and
// for iPXE. mac is the client's canonical MAC. It returns "" for NotPXE and
// Unsupported.
func BootFile(k ClientKind, httpBase, mac string) string {
	switch k {
	case PXEBIOS:
		return BIOSBootFile
	case PXEEFI:
		return EFIBootFile
	case HTTPEFI:
		return httpBase + "/" + EFIBootFile
	case IPXE:
		return httpBase + "/boot.ipxe?mac=" + mac
	}
	return ""
}

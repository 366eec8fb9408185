package netconf

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// The DHCP messages carry the fields RFC 2131 Table 5 asks for, and the
// transaction ids differ between exchanges and between machines.
func TestDHCPMessages(t *testing.T) {
	hw := net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	xids := newXIDSource(hw, time.Unix(100, 0), 1)
	d := discoverMsg(hw, xids.next())
	if d.MessageType() != dhcpv4.MessageTypeDiscover || d.ClientHWAddr.String() != hw.String() || d.OpCode != dhcpv4.OpcodeBootRequest {
		t.Fatalf("discover: %s", d.Summary())
	}
	for _, o := range []dhcpv4.OptionCode{dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer, dhcpv4.OptionDNSDomainSearchList} {
		if !d.IsOptionRequested(o) {
			t.Errorf("discover does not request %s", o)
		}
	}
	offer := newMessage(d.TransactionID, dhcpv4.WithReply(d), dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer),
		dhcpv4.WithYourIP(net.IPv4(10, 0, 0, 5)), dhcpv4.WithServerIP(net.IPv4(10, 0, 0, 1)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))))
	offer.OpCode = dhcpv4.OpcodeBootReply
	r := requestMsg(offer)
	if r.MessageType() != dhcpv4.MessageTypeRequest || r.TransactionID != d.TransactionID ||
		!r.RequestedIPAddress().Equal(net.IPv4(10, 0, 0, 5)) || !r.ServerIdentifier().Equal(net.IPv4(10, 0, 0, 1)) {
		t.Fatalf("request: %s", r.Summary())
	}
	seen := map[dhcpv4.TransactionID]bool{}
	for i := 0; i < 1000; i++ {
		seen[xids.next()] = true
	}
	if len(seen) < 999 {
		t.Errorf("1000 transaction ids from one source: %d distinct", len(seen))
	}
	other := newXIDSource(net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x57}, time.Unix(100, 0), 1)
	a, b := newXIDSource(hw, time.Unix(100, 0), 1).next(), other.next()
	if a == b {
		t.Errorf("two machines booted at the same time share transaction id %s", a)
	}
}

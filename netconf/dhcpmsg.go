package netconf

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
)

// The DHCP library draws every transaction id from the kernel's
// cryptographic pool (getrandom), which blocks until the pool is
// initialised. On a machine without a hardware RNG (QEMU's default CPU
// model has no RDRAND) that takes minutes early in boot, and the library
// gives up with "could not get random number". A transaction id only has
// to differ between clients and exchanges (RFC 2131 §4.1: "a random
// number"), not be secret, so the installer draws it from a non-blocking
// generator seeded with the time, the MAC and the process id. Nothing
// before the network is up needs cryptographic randomness.

// xidSource returns transaction ids for one interface.
type xidSource struct{ r *rand.Rand }

func newXIDSource(hw net.HardwareAddr, now time.Time, pid int) *xidSource {
	h := fnv.New64a()
	h.Write(hw)
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	binary.LittleEndian.PutUint64(b[8:], uint64(pid))
	h.Write(b[:])
	seed := h.Sum64()
	return &xidSource{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (s *xidSource) next() dhcpv4.TransactionID {
	var x dhcpv4.TransactionID
	binary.BigEndian.PutUint32(x[:], s.r.Uint32())
	return x
}

// newMessage builds a DHCP request with a given transaction id, as the
// library's New does but without its blocking random draw.
func newMessage(xid dhcpv4.TransactionID, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        iana.HWTypeEthernet,
		ClientHWAddr:  make(net.HardwareAddr, 6),
		TransactionID: xid,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       make(dhcpv4.Options),
	}
	for _, m := range mods {
		m(d)
	}
	return d
}

var requested = dhcpv4.WithRequestedOptions(
	dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainName,
	dhcpv4.OptionDomainNameServer, dhcpv4.OptionDNSDomainSearchList)

// discoverMsg and requestMsg are RFC 2131's DISCOVER and REQUEST (Table 5),
// the same fields nclient4's DiscoverOffer and RequestFromOffer send.
func discoverMsg(hw net.HardwareAddr, xid dhcpv4.TransactionID) *dhcpv4.DHCPv4 {
	return newMessage(xid, dhcpv4.WithHwAddr(hw), requested,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)))
}

func requestMsg(offer *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return newMessage(offer.TransactionID, dhcpv4.WithReply(offer), requested,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(offer.ClientIPAddr),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOptionCopied(offer, dhcpv4.OptionServerIdentifier),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)))
}

// exchange runs DISCOVER/OFFER/REQUEST/ACK on c and returns the ACK.
func exchange(ctx context.Context, c *nclient4.Client, xids *xidSource) (*dhcpv4.DHCPv4, error) {
	hw := c.InterfaceAddr()
	offer, err := c.SendAndRead(ctx, c.RemoteAddr(), discoverMsg(hw, xids.next()), nclient4.IsMessageType(dhcpv4.MessageTypeOffer))
	if err != nil {
		return nil, fmt.Errorf("no offer: %w", err)
	}
	ack, err := c.SendAndRead(ctx, c.RemoteAddr(), requestMsg(offer), nclient4.IsAll(
		nclient4.IsCorrectServer(offer.ServerIdentifier()),
		nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)))
	if err != nil {
		return nil, fmt.Errorf("no answer to the request: %w", err)
	}
	if ack.MessageType() == dhcpv4.MessageTypeNak {
		return nil, fmt.Errorf("server %s refused the offered address %s (NAK)", offer.ServerIdentifier(), offer.YourIPAddr)
	}
	return ack, nil
}

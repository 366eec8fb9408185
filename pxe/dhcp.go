package pxe

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/nixlos/nixlos/pxe/wire"
)

// Range is a pool of IPv4 addresses for full DHCP, First..Last inclusive.
type Range struct {
	First, Last netip.Addr
}

func (r Range) String() string { return r.First.String() + "-" + r.Last.String() }

// ParseRange parses "FIRST-LAST" (both IPv4, FIRST <= LAST, at most 65536 addresses).
func ParseRange(s string) (Range, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return Range{}, fmt.Errorf("range %q is not FIRST-LAST", s)
	}
	first, err1 := netip.ParseAddr(strings.TrimSpace(a))
	last, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || !first.Is4() || !last.Is4() {
		return Range{}, fmt.Errorf("range %q: both ends must be IPv4 addresses", s)
	}
	if last.Less(first) {
		return Range{}, fmt.Errorf("range %q: first address is after the last", s)
	}
	if ip4(last)-ip4(first) >= 1<<16 {
		return Range{}, fmt.Errorf("range %q: more than 65536 addresses", s)
	}
	return Range{First: first, Last: last}, nil
}

func ip4(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

func fromU32(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// LeaseTime is the full-DHCP lease length.
const LeaseTime = time.Hour

type lease struct {
	ip      netip.Addr
	expires time.Time
}

// leases is the in-memory lease table of full-DHCP mode.
type leases struct {
	mu    sync.Mutex
	r     Range
	byMAC map[string]lease
	byIP  map[netip.Addr]string
	now   func() time.Time
}

func newLeases(r Range) *leases {
	return &leases{r: r, byMAC: map[string]lease{}, byIP: map[netip.Addr]string{}, now: time.Now}
}

// offer returns the address for mac: its current lease, or a free one
// (preferring want when it is free and in range); ok is false when full.
func (l *leases) offer(mac string, want netip.Addr) (netip.Addr, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if le, ok := l.byMAC[mac]; ok {
		return le.ip, true
	}
	free := func(a netip.Addr) bool {
		owner, used := l.byIP[a]
		if !used {
			return true
		}
		if le := l.byMAC[owner]; now.After(le.expires) {
			delete(l.byMAC, owner)
			delete(l.byIP, a)
			return true
		}
		return false
	}
	if want.Is4() && l.inRange(want) && free(want) {
		return want, true
	}
	for v := ip4(l.r.First); v <= ip4(l.r.Last) && v != 0; v++ {
		if a := fromU32(v); free(a) {
			// Hold it briefly so two clients are not offered the same address.
			l.byMAC[mac] = lease{ip: a, expires: now.Add(30 * time.Second)}
			l.byIP[a] = mac
			return a, true
		}
	}
	return netip.Addr{}, false
}

// commit makes a lease for mac on ip if ip is in range and not someone else's.
func (l *leases) commit(mac string, ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.inRange(ip) {
		return false
	}
	now := l.now()
	if owner, used := l.byIP[ip]; used && owner != mac && now.Before(l.byMAC[owner].expires) {
		return false
	}
	if old, ok := l.byMAC[mac]; ok && old.ip != ip {
		delete(l.byIP, old.ip)
	}
	l.byMAC[mac] = lease{ip: ip, expires: now.Add(LeaseTime)}
	l.byIP[ip] = mac
	return true
}

func (l *leases) release(mac string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if le, ok := l.byMAC[mac]; ok {
		delete(l.byIP, le.ip)
		delete(l.byMAC, mac)
	}
}

func (l *leases) inRange(a netip.Addr) bool {
	return a.Is4() && ip4(a) >= ip4(l.r.First) && ip4(a) <= ip4(l.r.Last)
}

// pxeVendorOptions is option 43 telling PXE ROMs to boot the offered file
// without boot-server discovery (PXE_DISCOVERY_CONTROL = 8).
var pxeVendorOptions = []byte{6, 1, 8, 255}

// dhcpHandler answers on port 67 (proxyPort false) or 4011 (true).
func (s *Server) dhcpHandler(proxyPort bool) server4.Handler {
	return func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		defer func() {
			if r := recover(); r != nil {
				s.logf("dhcp: dropped a request that crashed its handler: %v", r)
			}
		}()
		reply := s.dhcpReply(m, proxyPort)
		if reply == nil {
			return
		}
		if _, err := conn.WriteTo(reply.ToBytes(), replyAddr(peer, m, reply)); err != nil {
			s.logf("dhcp: reply to %s: %v", m.ClientHWAddr, err)
		}
	}
}

// replyAddr is where a reply goes: the relay, the client's address, or broadcast.
func replyAddr(peer net.Addr, req, reply *dhcpv4.DHCPv4) net.Addr {
	up, _ := peer.(*net.UDPAddr)
	if up == nil {
		return peer
	}
	if !req.GatewayIPAddr.IsUnspecified() && req.GatewayIPAddr != nil {
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: dhcpv4.ServerPort}
	}
	if req.ClientIPAddr != nil && !req.ClientIPAddr.IsUnspecified() {
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: up.Port}
	}
	if up.IP.Equal(net.IPv4bcast) || up.IP.IsUnspecified() {
		return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	}
	return up
}

// dhcpReply computes the reply to m, or nil for no answer.
func (s *Server) dhcpReply(m *dhcpv4.DHCPv4, proxyPort bool) *dhcpv4.DHCPv4 {
	if m.OpCode != dhcpv4.OpcodeBootRequest || len(m.ClientHWAddr) != 6 {
		return nil
	}
	mac := m.ClientHWAddr.String()
	kind := Classify(m)
	mc, known := s.machineMap().Lookup(mac)
	if !known && s.cfg.Unknown == UnknownIgnore {
		return nil
	}
	mt := m.MessageType()
	srvIP := net.IP(s.cfg.Addr.AsSlice())
	boot := BootFile(kind, s.httpURL, mac)

	if s.cfg.Range == nil || proxyPort {
		// proxyDHCP: boot information only, to PXE clients only.
		if boot == "" {
			if kind == Unsupported {
				s.logf("dhcp: %s: no boot file for client arch %v", mac, m.ClientArch())
			}
			return nil
		}
		var rt dhcpv4.MessageType
		switch {
		case !proxyPort && mt == dhcpv4.MessageTypeDiscover:
			rt = dhcpv4.MessageTypeOffer
		case proxyPort && (mt == dhcpv4.MessageTypeRequest || mt == dhcpv4.MessageTypeInform):
			rt = dhcpv4.MessageTypeAck
		default:
			return nil
		}
		reply, err := dhcpv4.NewReplyFromRequest(m,
			dhcpv4.WithMessageType(rt),
			dhcpv4.WithServerIP(srvIP),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvIP)),
		)
		if err != nil {
			return nil
		}
		reply.YourIPAddr = net.IPv4zero
		s.addBoot(reply, kind, boot)
		s.cfg.Tracker.Record(mac, mc.Host, wire.StateDHCP, fmt.Sprintf("proxyDHCP %s: %s", kind, boot), -1)
		return reply
	}

	// Full DHCP: addresses for everyone (known or menu), boot info for PXE clients.
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		want, _ := netip.AddrFromSlice(m.RequestedIPAddress().To4())
		ip, ok := s.leases.offer(mac, want)
		if !ok {
			s.logf("dhcp: %s: address pool %s is full", mac, s.cfg.Range)
			return nil
		}
		reply := s.fullReply(m, dhcpv4.MessageTypeOffer, ip)
		if reply != nil && boot != "" {
			s.addBoot(reply, kind, boot)
		}
		return reply
	case dhcpv4.MessageTypeRequest:
		if sid := m.ServerIdentifier(); sid != nil && !sid.Equal(srvIP) {
			s.leases.release(mac) // the client chose another server
			return nil
		}
		reqIP := m.RequestedIPAddress()
		if reqIP == nil || reqIP.IsUnspecified() {
			reqIP = m.ClientIPAddr
		}
		want, _ := netip.AddrFromSlice(reqIP.To4())
		if !s.leases.commit(mac, want) {
			nak, err := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvIP)))
			if err != nil {
				return nil
			}
			return nak
		}
		reply := s.fullReply(m, dhcpv4.MessageTypeAck, want)
		if reply == nil {
			return nil
		}
		if boot != "" {
			s.addBoot(reply, kind, boot)
			s.cfg.Tracker.Record(mac, mc.Host, wire.StateDHCP, fmt.Sprintf("lease %s, %s: %s", want, kind, boot), -1)
		}
		return reply
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		s.leases.release(mac)
	}
	return nil
}

func (s *Server) fullReply(m *dhcpv4.DHCPv4, mt dhcpv4.MessageType, ip netip.Addr) *dhcpv4.DHCPv4 {
	srvIP := net.IP(s.cfg.Addr.AsSlice())
	mask := s.cfg.Mask
	if mask == nil {
		mask = net.CIDRMask(24, 32)
	}
	reply, err := dhcpv4.NewReplyFromRequest(m,
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithYourIP(net.IP(ip.AsSlice())),
		dhcpv4.WithServerIP(srvIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvIP)),
		dhcpv4.WithNetmask(mask),
		dhcpv4.WithLeaseTime(uint32(LeaseTime/time.Second)),
	)
	if err != nil {
		return nil
	}
	return reply
}

// addBoot puts the boot file and the PXE/HTTP vendor class into reply.
func (s *Server) addBoot(reply *dhcpv4.DHCPv4, kind ClientKind, boot string) {
	reply.BootFileName = boot
	reply.ServerIPAddr = net.IP(s.cfg.Addr.AsSlice())
	switch kind {
	case HTTPEFI:
		reply.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
	default:
		reply.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
		if kind != IPXE {
			reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeVendorOptions))
		}
	}
}

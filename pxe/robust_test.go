package pxe

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/nixlos/nixlos/internal/testenv"
)

// pxeRequest builds an iPXE-style DHCP request from testMAC with ciaddr set
// to loopback, so the server's reply comes back by unicast.
func pxeRequest(t testing.TB, mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	hw, _ := net.ParseMAC(testMAC)
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(mt),
		dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithUserClass("iPXE", false))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// dhcpExchange sends m to addr and returns the decoded reply.
func dhcpExchange(t testing.TB, addr *net.UDPAddr, m *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	return dhcpExchangeWait(t, addr, m, 3*time.Second)
}

// dhcpNoAnswer is how long a test waits to be sure no reply comes.
const dhcpNoAnswer = 700 * time.Millisecond

func dhcpExchangeWait(t testing.TB, addr *net.UDPAddr, m *dhcpv4.DHCPv4, wait time.Duration) (*dhcpv4.DHCPv4, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDP(m.ToBytes(), addr); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		return nil, err
	}
	return dhcpv4.FromBytes(buf[:n])
}

func checkGoodDHCP(t testing.TB, s *testServer, addr *net.UDPAddr, mt, want dhcpv4.MessageType) {
	t.Helper()
	r, err := dhcpExchange(t, addr, pxeRequest(t, mt))
	if err != nil {
		t.Fatalf("good DHCP %s: %v", mt, err)
	}
	if r.MessageType() != want || r.BootFileName != s.HTTPBase()+"/boot.ipxe?mac="+testMAC || r.ClassIdentifier() != "PXEClient" {
		t.Fatalf("good DHCP %s: got %s file %q class %q", mt, r.MessageType(), r.BootFileName, r.ClassIdentifier())
	}
}

// malformedDHCP returns a garbled DHCP packet: random bytes, a truncated or
// bit-flipped valid request, or a valid header with nonsense options.
func malformedDHCP(rng *rand.Rand, valid []byte) []byte {
	switch rng.IntN(4) {
	case 0:
		b := make([]byte, rng.IntN(600))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	case 1:
		return append([]byte(nil), valid[:rng.IntN(len(valid))]...)
	case 2:
		b := append([]byte(nil), valid...)
		for range 1 + rng.IntN(20) {
			b[rng.IntN(len(b))] ^= byte(1 << rng.IntN(8))
		}
		return b
	default:
		b := append([]byte(nil), valid[:240]...)
		for range rng.IntN(40) {
			code := byte(rng.IntN(256))
			l := rng.IntN(300)
			b = append(b, code, byte(l))
			for range rng.IntN(l + 1) {
				b = append(b, byte(rng.Uint32()))
			}
		}
		return b
	}
}

// malformedTFTP returns a garbled TFTP packet. Requests name missing files
// (the transfer ends at once) except a few with hostile options on a real file.
func malformedTFTP(rng *rand.Rand) []byte {
	opts := []string{"blksize", "windowsize", "timeout", "tsize", "bogus"}
	vals := []string{"0", "1", "7", "65535", "65536", "99999999999", "-1", "", "x"}
	switch rng.IntN(5) {
	case 0:
		b := make([]byte, rng.IntN(700))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	case 1: // other opcodes from an unknown transfer ID
		return []byte{0, byte(2 + rng.IntN(6)), byte(rng.Uint32()), byte(rng.Uint32()), 0}
	case 2: // no terminating NUL, odd NUL counts, bad modes
		return []byte(string([]byte{0, 1}) + "initrd\x00" + []string{"octet", "mail\x00", "netascii\x00x", "\x00\x00\x00"}[rng.IntN(4)])
	case 3:
		name := []string{"nope", "../nope", "/nope", "\x00", strings.Repeat("a", 600)}[rng.IntN(5)]
		return rrq(name, "octet", opts[rng.IntN(5)], vals[rng.IntN(len(vals))])
	default:
		if rng.IntN(10) != 0 {
			return rrq("missing-"+fmt.Sprint(rng.IntN(100)), "netascii", "windowsize", vals[rng.IntN(len(vals))], "blksize", vals[rng.IntN(len(vals))])
		}
		return rrq(KernelFile, "octet", "windowsize", vals[rng.IntN(len(vals))], "blksize", vals[rng.IntN(len(vals))], "timeout", vals[rng.IntN(len(vals))])
	}
}

// malformedHTTP returns a raw, broken HTTP request.
func malformedHTTP(rng *rand.Rand) string {
	switch rng.IntN(8) {
	case 0:
		b := make([]byte, rng.IntN(400))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return string(b)
	case 1:
		return "GET /" + strings.Repeat("A", rng.IntN(9000)) + " HTTP/1.1\r\nHost: x\r\n\r\n"
	case 2:
		return "POST /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{\"mac\":[1,2,{\"x\":"
	case 3:
		body := []string{`{"mac":"52:54:00:12:34:56","state":"complete","progress":1e309}`, `{"mac":"zz","state":"x"}`, `null`, `{"mac":"52:54:00:12:34:56","state":"installing","message":"` + strings.Repeat("\x1b[2J", 500) + `"}`}[rng.IntN(4)]
		// Never "complete" for testMAC: the good boot afterwards must still install.
		body = strings.ReplaceAll(body, "52:54:00:12:34:56", "52:54:00:aa:aa:aa")
		return fmt.Sprintf("POST /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	case 4:
		return "GET /v1/key?mac=" + []string{"%zz", testMAC + "&token=%00", "52:54:00:12:34:56&token=" + strings.Repeat("f", 32), "", "1"}[rng.IntN(5)] + " HTTP/1.1\r\nHost: x\r\n\r\n"
	case 5:
		return "GET /initrd HTTP/1.1\r\nHost: x\r\nRange: " + []string{"bytes=-0", "bytes=99999999-", "bytes=5-1", "bytes=0-1,0-1,0-1,0-1,0-1", "lines=1-2"}[rng.IntN(5)] + "\r\n\r\n"
	case 6:
		return "GET /boot.ipxe?mac=" + []string{"${net0/mac}", "%00", "52:54:00:12:34:56:78:90", "-"}[rng.IntN(4)] + " HTTP/1.1\r\nHost: x\r\n\r\n"
	default:
		return "BREW /../../etc/passwd HTTP/9.9\r\n" + strings.Repeat("X-A: b\r\n", rng.IntN(2000))
	}
}

func TestMalformedRequests(t *testing.T) {
	testenv.Short(t, "sends 3x1000 requests; skipped with -short")
	s := startTestServer(t, keyMap, func(c *Config) { c.ProxyPort = 0 })
	rng := rand.New(rand.NewPCG(1, 2))
	valid := pxeRequest(t, dhcpv4.MessageTypeDiscover).ToBytes()
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for i := range 1000 {
		to := s.DHCPAddr
		if i%2 == 1 {
			to = s.ProxyAddr
		}
		udp.WriteToUDP(malformedDHCP(rng, valid), to)
		udp.WriteToUDP(malformedTFTP(rng), s.TFTPAddr)
		if i%50 == 0 {
			time.Sleep(5 * time.Millisecond) // bounded rate: let the server keep up
		}
	}
	for range 1000 {
		c, err := net.DialTimeout("tcp", s.HTTPAddr.String(), 2*time.Second)
		if err != nil {
			t.Fatalf("http dial: %v", err)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c, malformedHTTP(rng))
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		bufio.NewReader(c).ReadString('\n')
		c.Close()
	}
	// A good client still boots right after: proxyDHCP ACK, TFTP, boot script, kernel.
	checkGoodDHCP(t, s, s.ProxyAddr, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeAck)
	reply := rawTFTP(t, s.TFTPAddr, rrq(BIOSBootFile, "octet"), 3*time.Second)
	if len(reply) < 4 || reply[1] != 3 {
		t.Fatalf("good TFTP request after the flood: %q", reply)
	}
	code, script := get(t, s.HTTPBase()+"/boot.ipxe?mac="+testMAC)
	if code != 200 || !strings.Contains(script, "nixlos.host=server") {
		t.Fatalf("good boot script after the flood: %d %s", code, script)
	}
	resp, err := http.Get(s.HTTPBase() + "/vmlinuz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("kernel after the flood: %v", err)
	}
	resp.Body.Close()
}

func TestDHCPModes(t *testing.T) {
	// proxyDHCP: port 67 answers a PXE DISCOVER with an OFFER without an
	// address; 4011 answers the REQUEST; plain clients get nothing.
	s := startTestServer(t, keyMap, func(c *Config) { c.ProxyPort = 0 })
	r, err := dhcpExchange(t, s.DHCPAddr, pxeRequest(t, dhcpv4.MessageTypeDiscover))
	if err != nil || r.MessageType() != dhcpv4.MessageTypeOffer || !r.YourIPAddr.IsUnspecified() {
		t.Fatalf("proxy offer: %v %v", r, err)
	}
	checkGoodDHCP(t, s, s.ProxyAddr, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeAck)
	plain, _ := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 1}), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)))
	if r, err := dhcpExchangeWait(t, s.DHCPAddr, plain, dhcpNoAnswer); err == nil {
		t.Fatalf("proxyDHCP answered a non-PXE client: %v", r)
	}

	// Full DHCP: an address from the pool for everyone, boot info for PXE.
	rg, _ := ParseRange("10.99.0.100-10.99.0.101")
	f := startTestServer(t, keyMap, func(c *Config) { c.Range = &rg })
	r, err = dhcpExchange(t, f.DHCPAddr, pxeRequest(t, dhcpv4.MessageTypeDiscover))
	if err != nil || r.MessageType() != dhcpv4.MessageTypeOffer || r.YourIPAddr.String() != "10.99.0.100" || r.BootFileName == "" {
		t.Fatalf("full offer: %v %v", r, err)
	}
	req := pxeRequest(t, dhcpv4.MessageTypeRequest)
	req.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 99, 0, 100)))
	req.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(127, 0, 0, 1)))
	if r, err = dhcpExchange(t, f.DHCPAddr, req); err != nil || r.MessageType() != dhcpv4.MessageTypeAck || r.IPAddressLeaseTime(0) != LeaseTime {
		t.Fatalf("full ack: %v %v", r, err)
	}
	if r, err = dhcpExchange(t, f.DHCPAddr, plain); err != nil || r.YourIPAddr.String() != "10.99.0.101" || r.BootFileName != "" {
		t.Fatalf("plain client in full mode: %v %v", r, err)
	}
	// Pool of two is now full (one lease, one offer held).
	other, _ := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 2}), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)))
	if r, err := dhcpExchangeWait(t, f.DHCPAddr, other, dhcpNoAnswer); err == nil {
		t.Fatalf("offer from a full pool: %v", r)
	}
	// A request for an address outside the pool is NAKed.
	bad := pxeRequest(t, dhcpv4.MessageTypeRequest)
	bad.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 99, 0, 7)))
	if r, err = dhcpExchange(t, f.DHCPAddr, bad); err != nil || r.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("out-of-pool request: %v %v", r, err)
	}
	// --unknown=ignore: an unmapped PXE client gets no answer at all.
	ig := startTestServer(t, "", func(c *Config) { c.Unknown = UnknownIgnore; c.ProxyPort = 0 })
	if r, err := dhcpExchangeWait(t, ig.DHCPAddr, pxeRequest(t, dhcpv4.MessageTypeDiscover), dhcpNoAnswer); err == nil {
		t.Fatalf("ignored MAC got an answer: %v", r)
	}
}

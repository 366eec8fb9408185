package pxe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"pack.ag/tftp"
)

// Unknown-MAC policies (--unknown).
const (
	UnknownMenu   = "menu"   // boot the installer with the plain menu command line
	UnknownIgnore = "ignore" // no DHCP answer, no boot script
)

// Default ports.
const (
	DHCPPort  = 67
	ProxyPort = 4011
	TFTPPort  = 69
	HTTPPort  = 80
)

// Config is what Serve needs. Ports are used as given (0 picks a free port,
// which tests use); a negative port disables that listener.
type Config struct {
	Iface     string     // interface the DHCP sockets bind to ("" = none, tests)
	Addr      netip.Addr // this server's IPv4 address on Iface
	Mask      net.IPMask // the interface's netmask (full DHCP)
	DHCPPort  int
	ProxyPort int // proxyDHCP port 4011 (proxy mode only)
	TFTPPort  int
	HTTPPort  int

	Bundle  *Bundle
	Map     *Map   // may be nil: every MAC is unknown
	MapFile string // when set, re-read on key requests so "key" can be toggled live
	Range   *Range // nil: proxyDHCP; else full DHCP from this pool
	Unknown string // UnknownMenu (default) or UnknownIgnore
	AgeKey  string // age key file served on /v1/key ("" = none)
	// Discover boots unknown MACs in discovery mode (nixlos.discover=1):
	// they post their hardware to /v1/discover and wait until the map has
	// them (mkiso enroll), then reboot into a normal install. It overrides
	// Unknown. DiscoverDir keeps the reports for mkiso enroll ("" = none).
	Discover    bool
	DiscoverDir string

	Tracker *Tracker
	Log     io.Writer // diagnostics (never the key); io.Discard when nil
}

// InterfaceAddr returns the first IPv4 address and netmask of the named interface.
func InterfaceAddr(name string) (netip.Addr, net.IPMask, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}, nil, fmt.Errorf("interface %s: %w", name, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, nil, fmt.Errorf("interface %s: %w", name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if v4 := n.IP.To4(); v4 != nil {
				ip, _ := netip.AddrFromSlice(v4)
				return ip, n.Mask, nil
			}
		}
	}
	return netip.Addr{}, nil, fmt.Errorf("interface %s has no IPv4 address", name)
}

// Server is a running PXE server.
type Server struct {
	cfg     Config
	log     io.Writer
	httpURL string

	mu      sync.Mutex
	mapv    *Map
	mapMod  time.Time
	leases  *leases
	ipMAC   map[string]string
	closers []func() error

	hosts    map[string][]string // the bundle's hosts (nil: unknown)
	hostsKey string              // the initrd's size and mtime hosts was read at

	// Bound addresses, filled by Start.
	DHCPAddr, ProxyAddr, TFTPAddr *net.UDPAddr
	HTTPAddr                      *net.TCPAddr
}

// New checks cfg and returns a Server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if cfg.Bundle == nil {
		return nil, errors.New("pxe: no bundle")
	}
	if !cfg.Addr.Is4() {
		return nil, errors.New("pxe: server address must be IPv4")
	}
	if cfg.Unknown == "" {
		cfg.Unknown = UnknownMenu
	}
	if cfg.Unknown != UnknownMenu && cfg.Unknown != UnknownIgnore {
		return nil, fmt.Errorf("pxe: unknown-MAC policy %q is not menu or ignore", cfg.Unknown)
	}
	if cfg.Tracker == nil {
		cfg.Tracker, _ = NewTracker(nil, "")
	}
	s := &Server{cfg: cfg, log: cfg.Log, mapv: cfg.Map}
	if s.log == nil {
		s.log = io.Discard
	}
	if cfg.MapFile != "" {
		if fi, err := os.Stat(cfg.MapFile); err == nil {
			s.mapMod = fi.ModTime()
		}
	}
	if cfg.Range != nil {
		s.leases = newLeases(*cfg.Range)
	}
	return s, nil
}

// Tracker returns the machine table.
func (s *Server) Tracker() *Tracker { return s.cfg.Tracker }

// HTTPBase is the server's base URL, http://ADDR:PORT (after Start).
func (s *Server) HTTPBase() string { return s.httpURL }

func (s *Server) logf(format string, args ...any) {
	fmt.Fprintf(s.log, format+"\n", args...)
}

// machineMap returns the current map.
func (s *Server) machineMap() *Map {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mapv
}

// reloadMap re-reads MapFile when it changed; a bad file keeps the old map.
func (s *Server) reloadMap() *Map {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MapFile == "" {
		return s.mapv
	}
	fi, err := os.Stat(s.cfg.MapFile)
	if err != nil || fi.ModTime().Equal(s.mapMod) {
		return s.mapv
	}
	m, err := LoadMap(s.cfg.MapFile)
	if err != nil {
		s.logf("map reload failed, keeping the old map: %v", err)
		return s.mapv
	}
	s.mapv, s.mapMod = m, fi.ModTime()
	return m
}

// Start opens every listener and serves in the background. Call Close to stop.
func (s *Server) Start() (err error) {
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	ip := s.cfg.Addr.AsSlice()
	// HTTP first: the boot file URLs need its port.
	if s.cfg.HTTPPort >= 0 {
		ln, err := net.Listen("tcp4", net.JoinHostPort(s.cfg.Addr.String(), strconv.Itoa(s.cfg.HTTPPort)))
		if err != nil {
			return fmt.Errorf("http listen: %w", err)
		}
		s.HTTPAddr = ln.Addr().(*net.TCPAddr)
		s.httpURL = "http://" + net.JoinHostPort(s.cfg.Addr.String(), strconv.Itoa(s.HTTPAddr.Port))
		hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
		go hs.Serve(ln)
		s.closers = append(s.closers, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := hs.Shutdown(ctx); err != nil {
				return hs.Close()
			}
			return nil
		})
	}
	if s.cfg.TFTPPort >= 0 {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: s.cfg.TFTPPort})
		if err != nil {
			return fmt.Errorf("tftp listen: %w", err)
		}
		s.TFTPAddr = conn.LocalAddr().(*net.UDPAddr)
		ts, err := tftp.NewServer("", tftp.ServerNet("udp4"))
		if err != nil {
			conn.Close()
			return fmt.Errorf("tftp: %w", err)
		}
		h, err := NewTFTPHandler(s.cfg.Bundle.Dir, s.tftpEvent)
		if err != nil {
			conn.Close()
			return err
		}
		ts.ReadHandler(h)
		go ts.Serve(conn)
		// ts.Serve records conn in a goroutine, and ts.Close dereferences it:
		// closing before that panics. Wait for it (briefly); if it has
		// still not happened, close the socket itself, which ends Serve.
		for i := 0; i < 2000 && !ts.Connected(); i++ {
			time.Sleep(time.Millisecond)
		}
		s.closers = append(s.closers, func() error {
			if ts.Connected() {
				return ts.Close()
			}
			return conn.Close()
		})
	}
	if s.cfg.DHCPPort >= 0 {
		srv, addr, err := s.dhcpListener(s.cfg.DHCPPort, false)
		if err != nil {
			return err
		}
		s.DHCPAddr = addr
		go srv.Serve()
		s.closers = append(s.closers, srv.Close)
	}
	if s.cfg.Range == nil && s.cfg.ProxyPort >= 0 {
		srv, addr, err := s.dhcpListener(s.cfg.ProxyPort, true)
		if err != nil {
			return err
		}
		s.ProxyAddr = addr
		go srv.Serve()
		s.closers = append(s.closers, srv.Close)
	}
	return nil
}

func (s *Server) dhcpListener(port int, proxyPort bool) (*server4.Server, *net.UDPAddr, error) {
	// DHCP requests from clients without an address are broadcast: bind the
	// wildcard address to the interface (SO_BINDTODEVICE). Without an
	// interface (tests) bind the server address itself.
	laddr := &net.UDPAddr{Port: port}
	if s.cfg.Iface == "" {
		laddr.IP = s.cfg.Addr.AsSlice()
	}
	conn, err := server4.NewIPv4UDPConn(s.cfg.Iface, laddr)
	if err != nil {
		return nil, nil, fmt.Errorf("dhcp listen on port %d: %w", port, err)
	}
	srv, err := server4.NewServer("", nil, s.dhcpHandler(proxyPort), server4.WithConn(conn))
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("dhcp: %w", err)
	}
	return srv, conn.LocalAddr().(*net.UDPAddr), nil
}

// Describe is the "serving on" line.
func (s *Server) Describe() string {
	mode := "proxyDHCP"
	if s.cfg.Range != nil {
		mode = fmt.Sprintf("DHCP %s", s.cfg.Range)
	}
	var parts []string
	if s.DHCPAddr != nil {
		parts = append(parts, fmt.Sprintf("%s udp/%d", mode, s.DHCPAddr.Port))
	}
	if s.ProxyAddr != nil {
		parts = append(parts, fmt.Sprintf("proxyDHCP udp/%d", s.ProxyAddr.Port))
	}
	if s.TFTPAddr != nil {
		parts = append(parts, fmt.Sprintf("TFTP udp/%d", s.TFTPAddr.Port))
	}
	if s.HTTPAddr != nil {
		parts = append(parts, "HTTP "+s.httpURL)
	}
	where := s.cfg.Addr.String()
	if s.cfg.Iface != "" {
		where += " (" + s.cfg.Iface + ")"
	}
	out := "serving on " + where + ":"
	for i, p := range parts {
		if i > 0 {
			out += ","
		}
		out += " " + p
	}
	return out
}

// Close stops every listener. Safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	cl := s.closers
	s.closers = nil
	s.mu.Unlock()
	var errs []error
	for i := len(cl) - 1; i >= 0; i-- {
		if err := cl[i](); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Serve starts the server, calls ready once every listener is up, and runs
// until ctx is cancelled; then it shuts down.
func (s *Server) Serve(ctx context.Context, ready func()) error {
	if err := s.Start(); err != nil {
		return err
	}
	if ready != nil {
		ready()
	}
	<-ctx.Done()
	return s.Close()
}

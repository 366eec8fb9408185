package netconf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Options says where and how to configure. The zero value configures the
// current network namespace's wired links with the defaults below.
type Options struct {
	// NS is the network namespace to work in; a value < 0 (netns.None())
	// or 0 means the current one. Every netlink call and every DHCP socket
	// is made inside it, never in another.
	NS netns.NsHandle
	// Links, when not empty, are the only links considered (by name), of
	// any type; otherwise every wired link: netlink type "device" with
	// Ethernet encapsulation (so not lo, bridges, veth, tun, bonds, …).
	Links []string
	// Root is the directory that holds etc/resolv.conf ("" means "/").
	Root string
	// CarrierWait bounds the wait for a carrier after bringing links up (default 5s).
	CarrierWait time.Duration
	// DHCPTimeout is the per-message DHCP timeout (default 3s), DHCPRetries
	// the per-message retries (default 3) and DHCPAttempts how many whole
	// DISCOVER…ACK exchanges each link gets (default 2).
	DHCPTimeout  time.Duration
	DHCPRetries  int
	DHCPAttempts int
	// Log receives one line per step (nil: discarded).
	Log io.Writer
}

func (o *Options) defaults() {
	if o.CarrierWait == 0 {
		o.CarrierWait = 5 * time.Second
	}
	if o.DHCPTimeout == 0 {
		o.DHCPTimeout = 3 * time.Second
	}
	if o.DHCPRetries == 0 {
		o.DHCPRetries = 3
	}
	if o.DHCPAttempts == 0 {
		o.DHCPAttempts = 2
	}
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	o.Log = &lockedWriter{w: o.Log} // DHCP runs per link in parallel
}

// lockedWriter serialises writes from the parallel DHCP clients.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Link is one candidate link and its state after bringing it up.
type Link struct {
	Name    string `json:"name"`
	MAC     string `json:"mac"`
	Carrier bool   `json:"carrier"`
}

// Result is what Configure did.
type Result struct {
	Mode      Mode          `json:"mode"`
	Link      string        `json:"link,omitempty"`
	Address   netip.Prefix  `json:"address,omitzero"`
	Gateway   netip.Addr    `json:"gateway,omitzero"`
	DNS       []netip.Addr  `json:"dns,omitempty"`
	Search    []string      `json:"search,omitempty"`
	Hostname  string        `json:"hostname,omitempty"` // from ip= or the lease; not applied
	Server    netip.Addr    `json:"server,omitzero"`    // DHCP server that gave the lease
	LeaseTime time.Duration `json:"leaseTime,omitempty"`
	Links     []Link        `json:"links"` // every link considered
}

// ErrNoLink is returned (wrapped) when no considered link has a carrier;
// the installer treats it as a warning when the install is offline-capable.
var ErrNoLink = errors.New("no wired link with a carrier")

// Configure applies cfg: for ModeOff nothing; otherwise it brings the
// candidate links up (cfg.Device narrows them to one), waits up to
// CarrierWait for a carrier, and then either sets the static address, default
// route and resolv.conf, or runs DHCPv4 on every link with a carrier in
// parallel and applies the first lease (address, router, DNS).
func Configure(ctx context.Context, cfg Config, opts Options) (Result, error) {
	opts.defaults()
	res := Result{Mode: cfg.Mode, Hostname: cfg.Hostname}
	if cfg.Mode == ModeOff {
		return res, nil
	}
	h, err := handle(opts.NS)
	if err != nil {
		return res, err
	}
	defer h.Close()
	if cfg.Device != "" {
		opts.Links = []string{cfg.Device}
	}
	links, err := bringUp(ctx, h, opts)
	res.Links = links
	if err != nil {
		return res, err
	}
	var up []string
	for _, l := range links {
		if l.Carrier {
			up = append(up, l.Name)
		}
	}
	if len(up) == 0 {
		var names []string
		for _, l := range links {
			names = append(names, l.Name)
		}
		return res, fmt.Errorf("network: %w (links: %s)", ErrNoLink, orNone(names))
	}
	switch cfg.Mode {
	case ModeStatic:
		res.Link = up[0]
		res.Address, res.Gateway, res.DNS = cfg.Address, cfg.Gateway, cfg.DNS
		fmt.Fprintf(opts.Log, "network: %s static %s gateway %s\n", res.Link, res.Address, showAddr(res.Gateway))
	case ModeDHCP:
		r, err := dhcpFirst(ctx, up, opts)
		if err != nil {
			return res, err
		}
		r.Links, r.Mode = links, cfg.Mode
		if len(cfg.DNS) > 0 { // ip=… dns0/dns1 take precedence over the lease's
			r.DNS = cfg.DNS
		}
		if cfg.Hostname != "" {
			r.Hostname = cfg.Hostname
		}
		res = r
	default:
		return res, fmt.Errorf("network: unknown mode %q", cfg.Mode)
	}
	if err := apply(h, res); err != nil {
		return res, err
	}
	if len(res.DNS) > 0 {
		if err := WriteResolvConf(opts.Root, res.DNS, res.Search); err != nil {
			return res, err
		}
	}
	return res, nil
}

// ListLinks returns the candidate links (see Options.Links) without changing them.
func ListLinks(opts Options) ([]Link, error) {
	h, err := handle(opts.NS)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	ls, err := candidates(h, opts.Links)
	if err != nil {
		return nil, err
	}
	var out []Link
	for _, l := range ls {
		out = append(out, Link{Name: l.Attrs().Name, MAC: l.Attrs().HardwareAddr.String(), Carrier: carrier(l)})
	}
	return out, nil
}

func handle(ns netns.NsHandle) (*netlink.Handle, error) {
	var h *netlink.Handle
	var err error
	if ns > 0 {
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE) // route only: xfrm/netfilter netlink are modules, absent in the installer
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("network: netlink: %w", err)
	}
	return h, nil
}

func candidates(h *netlink.Handle, only []string) ([]netlink.Link, error) {
	all, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("network: list links: %w", err)
	}
	var out []netlink.Link
	for _, l := range all {
		a := l.Attrs()
		if len(only) > 0 {
			for _, n := range only {
				if n == a.Name {
					out = append(out, l)
				}
			}
			continue
		}
		if a.Flags&net.FlagLoopback != 0 || l.Type() != "device" || a.EncapType != "ether" {
			continue
		}
		out = append(out, l)
	}
	if len(only) > 0 && len(out) != len(only) {
		return nil, fmt.Errorf("network: link %s: not found", strings.Join(missing(only, out), ", "))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attrs().Name < out[j].Attrs().Name })
	return out, nil
}

func missing(want []string, have []netlink.Link) []string {
	var m []string
	for _, n := range want {
		found := false
		for _, l := range have {
			found = found || l.Attrs().Name == n
		}
		if !found {
			m = append(m, n)
		}
	}
	return m
}

func carrier(l netlink.Link) bool {
	return l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
}

// bringUp sets every candidate link up and waits (bounded) until all have a
// carrier or the wait ends; links without one are reported, not an error.
func bringUp(ctx context.Context, h *netlink.Handle, opts Options) ([]Link, error) {
	ls, err := candidates(h, opts.Links)
	if err != nil {
		return nil, err
	}
	for _, l := range ls {
		if l.Attrs().Flags&net.FlagUp == 0 {
			if err := h.LinkSetUp(l); err != nil {
				return nil, fmt.Errorf("network: set %s up: %w", l.Attrs().Name, err)
			}
			fmt.Fprintf(opts.Log, "network: %s up\n", l.Attrs().Name)
		}
	}
	deadline := time.Now().Add(opts.CarrierWait)
	out := make([]Link, len(ls))
	for {
		all := true
		for i, l := range ls {
			cur, err := h.LinkByIndex(l.Attrs().Index)
			if err != nil {
				return nil, fmt.Errorf("network: link %s: %w", l.Attrs().Name, err)
			}
			out[i] = Link{Name: cur.Attrs().Name, MAC: cur.Attrs().HardwareAddr.String(), Carrier: carrier(cur)}
			all = all && out[i].Carrier
		}
		if all || time.Now().After(deadline) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// inNS runs fn on a thread switched into ns (no switch when ns <= 0).
func inNS(ns netns.NsHandle, fn func() error) error {
	if ns <= 0 {
		return fn()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace: keep it locked so that it
		// exits with this goroutine instead of serving others.
		runtime.LockOSThread()
		return fmt.Errorf("network: cannot return to the original namespace: %w", err)
	}
	return ferr
}

// dhcpFirst runs DHCP on every link in parallel; the first lease wins and the
// others are cancelled (and waited for, so nothing runs after it returns).
func dhcpFirst(ctx context.Context, links []string, opts Options) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type out struct {
		res Result
		err error
	}
	ch := make(chan out, len(links))
	var wg sync.WaitGroup
	for _, name := range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := dhcpLink(ctx, name, opts)
			ch <- out{r, err}
		}()
	}
	go func() { wg.Wait(); close(ch) }()
	var errs []error
	var won *Result
	for o := range ch {
		switch {
		case o.err == nil && won == nil:
			won = &o.res
			cancel()
		case o.err != nil:
			errs = append(errs, o.err)
		}
	}
	if won != nil {
		return *won, nil
	}
	return Result{}, fmt.Errorf("network: no DHCP lease on %s: %w", strings.Join(links, ", "), errors.Join(errs...))
}

func dhcpLink(ctx context.Context, name string, opts Options) (Result, error) {
	var c *nclient4.Client
	err := inNS(opts.NS, func() error {
		var err error
		c, err = nclient4.New(name, nclient4.WithTimeout(opts.DHCPTimeout), nclient4.WithRetry(opts.DHCPRetries))
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", name, err)
	}
	defer c.Close()
	xids := newXIDSource(c.InterfaceAddr(), time.Now(), os.Getpid())
	var lastErr error
	for attempt := 1; attempt <= opts.DHCPAttempts; attempt++ {
		fmt.Fprintf(opts.Log, "network: %s DHCP attempt %d/%d\n", name, attempt, opts.DHCPAttempts)
		ack, err := exchange(ctx, c, xids)
		if err == nil {
			r, err := fromLease(name, ack)
			if err == nil {
				fmt.Fprintf(opts.Log, "network: %s lease %s gateway %s from %s\n", name, r.Address, showAddr(r.Gateway), r.Server)
			}
			return r, err
		}
		lastErr = err
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("%s: %w", name, ctx.Err())
		}
	}
	return Result{}, fmt.Errorf("%s: %w", name, lastErr)
}

func fromLease(link string, ack *dhcpv4.DHCPv4) (Result, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return Result{}, fmt.Errorf("%s: lease without an address", link)
	}
	bits := classfulBits(ip)
	if m := ack.SubnetMask(); m != nil {
		if ones, size := m.Size(); size == 32 {
			bits = ones
		}
	}
	r := Result{Mode: ModeDHCP, Link: link, Address: netip.PrefixFrom(ip, bits), LeaseTime: ack.IPAddressLeaseTime(0)}
	for _, gw := range ack.Router() {
		if a, ok := netip.AddrFromSlice(gw.To4()); ok && !a.IsUnspecified() {
			r.Gateway = a
			break
		}
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			r.DNS = append(r.DNS, a)
		}
	}
	if s := ack.DomainSearch(); s != nil {
		r.Search = append(r.Search, s.Labels...)
	} else if d := ack.DomainName(); d != "" {
		r.Search = []string{d}
	}
	if a, ok := netip.AddrFromSlice(ack.ServerIdentifier().To4()); ok {
		r.Server = a
	}
	r.Hostname = ack.HostName()
	return r, nil
}

// apply puts r's address on r.Link and its default route.
func apply(h *netlink.Handle, r Result) error {
	l, err := h.LinkByName(r.Link)
	if err != nil {
		return fmt.Errorf("network: link %s: %w", r.Link, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: r.Address.Addr().AsSlice(), Mask: net.CIDRMask(r.Address.Bits(), 32)}}
	if r.LeaseTime > 0 {
		addr.ValidLft = int(r.LeaseTime / time.Second)
		addr.PreferedLft = addr.ValidLft
	}
	if err := h.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("network: address %s on %s: %w", r.Address, r.Link, err)
	}
	if r.Gateway.IsValid() {
		route := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: r.Gateway.AsSlice(),
			Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
		if err := h.RouteReplace(route); err != nil {
			return fmt.Errorf("network: default route via %s on %s: %w", r.Gateway, r.Link, err)
		}
	}
	return nil
}

// WriteResolvConf writes root/etc/resolv.conf with the name servers and
// search domains (replacing the file atomically).
func WriteResolvConf(root string, dns []netip.Addr, search []string) error {
	var b strings.Builder
	b.WriteString("# written by the nixlos installer\n")
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	for _, d := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	dir := filepath.Join(root, "etc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("network: resolv.conf: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".resolv.conf.*")
	if err != nil {
		return fmt.Errorf("network: resolv.conf: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return fmt.Errorf("network: resolv.conf: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("network: resolv.conf: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("network: resolv.conf: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, "resolv.conf")); err != nil {
		return fmt.Errorf("network: resolv.conf: %w", err)
	}
	return nil
}

func showAddr(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

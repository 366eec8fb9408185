package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nixlos/nixlos/bootcfg"
	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/pxe/wire"
)

// errEnrolled ends the boot flow of a machine in discovery mode once the
// server's map has it (mkiso enroll) and the served bundle can install its
// host: the boot flow reboots, and the next network boot is a normal
// unattended install with its own boot token.
var errEnrolled = errors.New("enrolled")

// discoverEvery is how often a machine in discovery mode asks the server
// whether it is enrolled.
var discoverEvery = 3 * time.Second

// repostEvery is how many polls of an unknown MAC pass before the report
// is posted again (a minute at discoverEvery).
var repostEvery = 20

// discover is nixlos.discover=1: post this machine's hardware (installer
// detect) to the server and wait until it is enrolled. It returns
// errEnrolled then; other errors only when ctx ends.
func (b *boot) discover(ctx context.Context, server string) error {
	if b.mac == "" {
		return errors.New(bootcfg.ParamDiscover + ": no MAC address for the configured link")
	}
	r, err := hw.Detect(hw.Options{})
	if err != nil {
		return fmt.Errorf("discovery: detect: %w", err)
	}
	d := wire.Discovery{MAC: b.mac, Vendor: readDMI("sys_vendor"), Product: readDMI("product_name"), Report: r}
	return waitEnrolled(ctx, b.out, server, d, discoverEvery)
}

// waitEnrolled posts d to server until it takes it, then polls
// /v1/machine every interval until the MAC is mapped to a host the served
// bundle has. While the MAC is unknown it posts the report again every
// repostEvery polls, so that a restarted server shows it as discovered again.
func waitEnrolled(ctx context.Context, out io.Writer, server string, d wire.Discovery, every time.Duration) error {
	posted := false
	lastWait := ""
	unknown := 0
	for {
		if !posted {
			switch err := wire.PostDiscovery(ctx, nil, server, d); {
			case err == nil && unknown > 0:
				posted = true // a repeat: said once already
			case err == nil:
				posted = true
				fmt.Fprintf(out, "nixlos: discovery: this machine (%s) reported to %s; waiting for 'mkiso enroll %s --host NAME'\n", d.MAC, server, d.MAC)
			case errors.Is(err, wire.ErrEnrolled):
				posted = true
			default:
				fmt.Fprintf(out, "nixlos: discovery: %v (retrying)\n", err)
			}
		}
		if posted {
			info, err := wire.FetchMachine(ctx, nil, server, d.MAC)
			switch {
			case err == nil && info.Waiting == "":
				fmt.Fprintf(out, "nixlos: discovery: enrolled as host=%s; rebooting into its install\n", info.Host)
				return errEnrolled
			case err == nil:
				if info.Waiting != lastWait {
					fmt.Fprintf(out, "nixlos: discovery: enrolled as host=%s, waiting: %s\n", info.Host, info.Waiting)
					lastWait = info.Waiting
				}
			case errors.Is(err, wire.ErrUnknownMachine):
				if unknown++; unknown%repostEvery == 0 {
					posted = false
				}
			default:
				fmt.Fprintf(out, "nixlos: discovery: %v (retrying)\n", err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("discovery: %w", ctx.Err())
		case <-time.After(every):
		}
	}
}

// readDMI reads one DMI identity field (vendor, product) or "".
func readDMI(name string) string {
	b, err := os.ReadFile("/sys/class/dmi/id/" + name)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

package pxe

import (
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixlos/nixlos/internal/testenv"
	"pack.ag/tftp"
)

const benchTFTPSize = 8 << 20

func tftpPull(b *testing.B, addr string, opts ...tftp.ClientOpt) time.Duration {
	c, err := tftp.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	resp, err := c.Get("tftp://" + addr + "/" + InitrdFile)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp)
	if err != nil || n != benchTFTPSize {
		b.Fatalf("tftp %s: %d bytes, %v", addr, n, err)
	}
	return time.Since(start)
}

// BenchmarkTFTPWindowsize: one client pulls an 8 MiB file by TFTP with
// blksize 1468 and windowsize 16 (RFC 7440) from the pxe server and from
// dnsmasq's TFTP server (127.0.0.1:69) serving the same file. Reports both
// MB/s and the ratio pxe/dnsmasq (goal ≥ 1.0).
func BenchmarkTFTPWindowsize(b *testing.B) {
	testenv.Tools(b, "dnsmasq")
	dnsmasq, err := exec.LookPath("dnsmasq")
	if err != nil {
		b.Fatal(err)
	}
	testenv.Root(b)
	s := startTestServer(b, keyMap, func(c *Config) { c.Bundle = testBundle(b, benchTFTPSize) })
	if c, err := net.ListenPacket("udp4", "127.0.0.1:69"); err != nil {
		b.Fatalf("127.0.0.1:69 busy (stop the TFTP server using it): %v", err)
	} else {
		c.Close()
	}
	dm := exec.Command(dnsmasq, "--keep-in-foreground", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--listen-address=127.0.0.1", "--bind-interfaces", "--enable-tftp", "--tftp-root="+s.cfg.Bundle.Dir,
		"--pid-file=", "--user=root", "--log-facility="+filepath.Join(b.TempDir(), "log"))
	if err := dm.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dm.Process.Kill(); dm.Wait() })
	time.Sleep(500 * time.Millisecond)
	opts := []tftp.ClientOpt{tftp.ClientBlocksize(1468), tftp.ClientWindowsize(16)}
	tftpPull(b, s.TFTPAddr.String(), opts...)
	tftpPull(b, "127.0.0.1:69", opts...)
	var ours, theirs time.Duration
	b.ResetTimer()
	for range b.N {
		ours += tftpPull(b, s.TFTPAddr.String(), opts...)
		theirs += tftpPull(b, "127.0.0.1:69", opts...)
	}
	mb := float64(benchTFTPSize*b.N) / 1e6
	b.ReportMetric(mb/ours.Seconds(), "pxe-MB/s")
	b.ReportMetric(mb/theirs.Seconds(), "dnsmasq-MB/s")
	b.ReportMetric(theirs.Seconds()/ours.Seconds(), "ratio")
}

package pxe

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nixlos/nixlos/internal/testenv"
)

const benchInitrdSize = 16 << 20 // about a real installer initrd
const benchClients = 32

// pull has n clients GET url concurrently, each reading the whole body.
func pull(b *testing.B, client *http.Client, url string, n int) time.Duration {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(url)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			got, err := io.Copy(io.Discard, resp.Body)
			if err == nil && got != benchInitrdSize {
				err = fmt.Errorf("%s: %d bytes, want %d", url, got, benchInitrdSize)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return d
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNginx serves dir on 127.0.0.1 with sendfile, like a tuned static server.
func startNginx(b *testing.B, dir string) string {
	testenv.Tools(b, "nginx")
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		b.Fatal(err)
	}
	tmp := b.TempDir()
	port := freePort(b)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`%s
worker_processes 2;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  server { listen 127.0.0.1:%[3]d; root %[4]s; }
}
`, user, tmp, port, dir)
	cf := filepath.Join(tmp, "nginx.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	cmd := exec.Command(nginx, "-c", cf, "-p", tmp)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	for i := 0; ; i++ {
		if resp, err := http.Get(url + "/" + InitrdFile); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		if i > 50 {
			b.Fatal("nginx did not come up")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkInitrd32Clients: 32 concurrent clients pull a 16 MiB initrd from
// the pxe HTTP server and from nginx (sendfile) serving the same file, on
// loopback. Reports each server's MB/s and the ratio pxe/nginx (goal ≥ 0.9).
func BenchmarkInitrd32Clients(b *testing.B) {
	s := startTestServer(b, keyMap, func(c *Config) { c.Bundle = testBundle(b, benchInitrdSize) })
	ng := startNginx(b, s.cfg.Bundle.Dir)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients, DisableCompression: true}}
	// Warm both (page cache, connections).
	pull(b, client, s.HTTPBase()+"/"+InitrdFile, benchClients)
	pull(b, client, ng+"/"+InitrdFile, benchClients)
	var ours, theirs time.Duration
	b.ResetTimer()
	for range b.N {
		ours += pull(b, client, s.HTTPBase()+"/"+InitrdFile, benchClients)
		theirs += pull(b, client, ng+"/"+InitrdFile, benchClients)
	}
	mb := float64(benchInitrdSize*benchClients*b.N) / 1e6
	b.ReportMetric(mb/ours.Seconds(), "pxe-MB/s")
	b.ReportMetric(mb/theirs.Seconds(), "nginx-MB/s")
	b.ReportMetric(theirs.Seconds()/ours.Seconds(), "ratio")
}

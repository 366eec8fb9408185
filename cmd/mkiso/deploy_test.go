package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
)

func TestDeployUsage(t *testing.T) {
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	}()
	dir := t.TempDir()
	known := filepath.Join(dir, "known_hosts")
	os.WriteFile(known, nil, 0o600)
	for _, tc := range []struct {
		name string
		args []string
		exit int
		want string
	}{
		{"help", []string{"deploy", "--help"}, 0, "Usage: mkiso deploy"},
		{"no target", []string{"deploy", "--host", "laptop"}, 2, "one target"},
		{"bad flag", []string{"deploy", "h", "--nosuch"}, 2, "nosuch"},
		{"no build", []string{"deploy", "root@127.0.0.1", "--host", "laptop", "--port", closed}, 2, "no build directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(tc.args, &out, &errb)
			if errs.Code(err) != tc.exit || !strings.Contains(out.String()+errb.String()+errString(err), tc.want) {
				t.Fatalf("exit %d, err %v, out %q; want exit %d with %q", errs.Code(err), err, out.String(), tc.exit, tc.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

package partition

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/disko"
)

// TestToposortLikeNixpkgs checks the order nixpkgs' toposort gives: a
// dependency pulls its dependent's order, otherwise input order stays.
func TestToposortLikeNixpkgs(t *testing.T) {
	before := func(a, b string) bool { return strings.HasPrefix(b, a) && a != b }
	got, err := toposort([]string{"/b", "/", "/a", "/b/c"}, before)
	if err != nil || !reflect.DeepEqual(got, []string{"/", "/b", "/a", "/b/c"}) {
		t.Errorf("toposort = %q, %v", got, err)
	}
	if _, err := toposort([]string{"x", "y"}, func(a, b string) bool { return true }); err == nil {
		t.Error("cycle not reported")
	}
}

func TestParseDiskArgsDistinct(t *testing.T) {
	d, err := disko.Load([]byte(`{"disk":{"a":{"device":"/dev/vda"},"b":{"device":"/dev/vdb"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "x.img")
	os.WriteFile(img, make([]byte, 4096), 0o600)
	if _, err := ParseDiskArgs(d, []string{"a=" + img, "b=" + img}); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("same device for two disks: %v", err)
	}
	ts, err := ParseDiskArgs(d, []string{"a=" + img, "b=2G"})
	if err != nil || ts["a"].SizeBytes != 4096 || ts["b"].SizeBytes != 2<<30 || ts["b"].Device != "" {
		t.Errorf("got %+v, %v", ts, err)
	}
	if _, err := disko.Load([]byte(`{"disk":{"a":{"device":"/dev/vda"},"b":{"device":"/dev/vda"}}}`)); err == nil {
		t.Error("two layout disks on one device accepted")
	}
}

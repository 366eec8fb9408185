package cli

import (
	"encoding/json"
	"io"
	"os/exec"
	"path"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/testenv"
)

const module = "github.com/nixlos/nixlos"

// listed is one package as `go list -json` prints it.
type listed struct {
	ImportPath string
	Name       string
	Imports    []string
	Deps       []string
}

func goList(t *testing.T, args ...string) []listed {
	t.Helper()
	testenv.Tools(t, "go")
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pkgs []listed
	dec := json.NewDecoder(out)
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr.String())
	}
	return pkgs
}

// TestInstallerDeps keeps the on-machine installer small: it must not link
// the workstation's image builders or the PXE server.
func TestInstallerDeps(t *testing.T) {
	pkgs := goList(t, module+"/cmd/installer")
	if len(pkgs) != 1 {
		t.Fatalf("go list returned %d packages", len(pkgs))
	}
	forbidden := []string{
		module + "/initramfs", // the initramfs builder
		module + "/image",     // ISO / USB / PXE image writers
		module + "/pxe",       // the PXE server and export
		"github.com/diskfs/go-diskfs/filesystem/iso9660", // the ISO writer
		"github.com/u-root/mkuimage/uimage",              // the u-root builder
		"github.com/u-root/u-root/pkg/uroot",
	}
	deps := map[string]bool{}
	for _, d := range pkgs[0].Deps {
		deps[d] = true
	}
	for _, f := range forbidden {
		if deps[f] {
			t.Errorf("cmd/installer links %s", f)
		}
	}
	if len(pkgs[0].Deps) == 0 {
		t.Fatal("go list reported no dependencies for cmd/installer")
	}
}

// TestOnlyCommandsImportCLI: library packages return errors (package
// errs); only programs (package main) and this package deal with flags and
// exit codes.
func TestOnlyCommandsImportCLI(t *testing.T) {
	pkgs := goList(t, module+"/...")
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	self := module + "/internal/cli"
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p.ImportPath, module+"/")
		if p.Name == "main" || p.ImportPath == self {
			continue
		}
		for _, imp := range p.Imports {
			if imp == self {
				t.Errorf("%s imports internal/cli; return an errs error instead", path.Clean(rel))
			}
		}
	}
}

// TestDiskLayers keeps the three disk packages layered: the disko schema
// depends on no nixlos package, the planner (partition) only on the schema,
// and only the executor (partition/apply) touches devices.
func TestDiskLayers(t *testing.T) {
	allowed := map[string][]string{
		module + "/disko":     nil,
		module + "/partition": {module + "/disko"},
	}
	pkgs := goList(t, module+"/disko", module+"/partition")
	if len(pkgs) != len(allowed) {
		t.Fatalf("go list returned %d packages, want %d", len(pkgs), len(allowed))
	}
	for _, p := range pkgs {
		ok := map[string]bool{}
		for _, a := range allowed[p.ImportPath] {
			ok[a] = true
		}
		for _, d := range p.Deps {
			if strings.HasPrefix(d, module+"/") && !ok[d] {
				t.Errorf("%s depends on %s", strings.TrimPrefix(p.ImportPath, module+"/"), strings.TrimPrefix(d, module+"/"))
			}
		}
	}
}

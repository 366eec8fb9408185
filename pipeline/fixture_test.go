package pipeline

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/nixlos/nixlos/initramfs"
	"github.com/nixlos/nixlos/internal/testenv"
)

// testVersion is the installer version of every test build: the ready line
// is "nixlos-installer pipelinetest ready".
const testVersion = "pipelinetest"

const readyLine = "nixlos-installer " + testVersion + " ready"

// testEpoch is the SOURCE_DATE_EPOCH of the test builds.
const testEpoch int64 = 1700000000

// fixtureRoot holds what the test binary builds once; removed by TestMain.
var fixtureRoot string

func TestMain(m *testing.M) {
	var err error
	if fixtureRoot, err = os.MkdirTemp("", "nixlos-pipeline-test-"); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(fixtureRoot)
	os.Exit(code)
}

// exampleFlake is examples/nix-los of this repository.
func exampleFlake() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "examples", "nix-los")
}

// needBuild skips under -short (a cold build compiles u-root: ~1 min) or
// without nix.
func needBuild(t testing.TB) {
	t.Helper()
	testenv.Short(t, "builds the installer media (u-root, installer, images); skipped with -short")
	testenv.Tools(t, "nix")
}

var installerOnce struct {
	sync.Once
	path string
	err  error
}

// pinnedInstaller builds the installer once per test binary, so every build
// in it embeds the same binary even while the working tree changes.
func pinnedInstaller(t testing.TB) string {
	t.Helper()
	installerOnce.Do(func() {
		mod, err := initramfs.FindModuleDir("")
		if err != nil {
			installerOnce.err = err
			return
		}
		installerOnce.path = filepath.Join(fixtureRoot, "installer")
		installerOnce.err = initramfs.BuildInstaller(context.Background(), mod, "github.com/nixlos/nixlos/cmd/installer", testVersion, installerOnce.path)
	})
	if installerOnce.err != nil {
		t.Fatalf("build installer: %v", installerOnce.err)
	}
	return installerOnce.path
}

// testOptions are the options of a test build of flakeDir into out.
func testOptions(t testing.TB, flakeDir, out string) Options {
	e := testEpoch
	return Options{Flake: flakeDir, Out: out, Epoch: &e, Version: testVersion,
		InstallerBinary: pinnedInstaller(t), Cmdline: "nixlos.after=poweroff"}
}

// build runs a whole build and fails the test on error.
func build(t testing.TB, opt Options) (*Result, string) {
	t.Helper()
	p, err := NewProfile(opt)
	if err != nil {
		t.Fatalf("profile: %v", err)
	}
	var log bytes.Buffer
	res, err := Build(context.Background(), p, &log)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	return res, log.String()
}

var exampleOnce struct {
	sync.Once
	out string
	res *Result
	log string
}

// exampleBuild builds examples/nix-los (all formats) once per test binary.
func exampleBuild(t testing.TB) (string, *Result) {
	t.Helper()
	needBuild(t)
	exampleOnce.Do(func() {
		out := filepath.Join(fixtureRoot, "example-out")
		exampleOnce.res, exampleOnce.log = build(t, testOptions(t, exampleFlake(), out))
		exampleOnce.out = out
	})
	if exampleOnce.res == nil {
		t.Fatal("the shared example build failed in an earlier test")
	}
	t.Logf("example build:\n%s", exampleOnce.log)
	return exampleOnce.out, exampleOnce.res
}

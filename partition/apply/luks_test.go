package apply

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/partition"
)

// TestLUKSKeysLoop runs the LUKS steps that need no device-mapper
// (luksFormat, luksAddKey) on a loop device for each key source disko
// knows, and checks with `cryptsetup open --test-passphrase` which keys
// unlock the result. Opening the container needs device-mapper: that part
// runs in the QEMU guest test.
func TestLUKSKeysLoop(t *testing.T) {
	requireLoop(t, "cryptsetup")
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	os.WriteFile(pwFile, []byte("from-file\n\n"), 0o600)
	extra := filepath.Join(dir, "extra.key")
	os.WriteFile(extra, []byte("extra key bytes\n"), 0o600)
	keyFile := filepath.Join(dir, "main.key")
	os.WriteFile(keyFile, []byte("main key\n"), 0o600)
	fast := `"extraFormatArgs":["--pbkdf pbkdf2 --pbkdf-force-iterations 1000"]`
	for _, tc := range []struct {
		name, luks   string
		password     string   // typed at the prompt (askPassword)
		unlock, fail []string // stdin keys that must / must not unlock
		unlockFiles  []string
	}{
		{name: "passwordFile", luks: `"passwordFile":"` + pwFile + `","additionalKeyFiles":["` + extra + `"]`,
			unlock: []string{"from-file"}, fail: []string{"from-file\n"}, unlockFiles: []string{extra}},
		{name: "settings.keyFile", luks: `"settings":{"keyFile":"` + keyFile + `","allowDiscards":true}`,
			unlock: []string{"main key\n"}, fail: []string{"main key"}, unlockFiles: []string{keyFile}},
		{name: "askPassword", luks: `"askPassword":true`, password: "typed at terminal",
			unlock: []string{"typed at terminal"}, fail: []string{"from-file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			layout := fmt.Sprintf(`{"disk":{"main":{"device":"/dev/vdb","content":{"type":"gpt","partitions":{"luks":{"size":"100%%","content":{"type":"luks","name":"crypted",%s,%s}}}}}}}`, tc.luks, fast)
			dev := newLoop(t, 64<<20)
			node := luksFormatOnly(t, layout, dev, tc.password)
			if out, err := exec.Command("cryptsetup", "isLuks", node).CombinedOutput(); err != nil {
				t.Fatalf("not LUKS: %v %s", err, out)
			}
			for _, k := range tc.unlock {
				if !unlocks(node, k, "-") {
					t.Errorf("key %q does not unlock %s", k, node)
				}
			}
			for _, k := range tc.fail {
				if unlocks(node, k, "-") {
					t.Errorf("key %q unlocks %s but must not", k, node)
				}
			}
			for _, f := range tc.unlockFiles {
				if !unlocks(node, "", f) {
					t.Errorf("key file %s does not unlock %s", f, node)
				}
			}
		})
	}
}

// luksFormatOnly plans the layout on dev and runs its steps up to the
// first one that needs device-mapper (cryptsetup open).
func luksFormatOnly(t *testing.T, layout, dev, password string) string {
	t.Helper()
	d, err := disko.Load([]byte(layout))
	if err != nil {
		t.Fatal(err)
	}
	p, err := partition.NewPlan(d, map[string]partition.Target{"main": {Device: dev, SizeBytes: 64 << 20}}, partition.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	s := &Session{Plan: p, Log: &log, Password: func(name, device string) ([]byte, error) {
		if name != "crypted" || device != "/dev/disk/by-partlabel/disk-main-luks" {
			t.Errorf("password asked for %s %s", name, device)
		}
		return []byte(password), nil
	}}
	if err := CheckSafety(p); err != nil {
		t.Fatal(err)
	}
	s.init()
	for _, st := range p.Steps {
		if st.Op == partition.OpLUKSOpen {
			continue // needs device-mapper
		}
		if err := s.exec(st); err != nil {
			t.Fatalf("%s: %v\n%s", st.Op, err, log.String())
		}
	}
	return dev + "p1"
}

func unlocks(node, key, keyFile string) bool {
	cmd := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", keyFile, node)
	cmd.Stdin = strings.NewReader(key)
	return cmd.Run() == nil
}

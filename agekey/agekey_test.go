package agekey_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/agekey/sopsfile"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/testenv"
)

func newKey(t *testing.T) *agekey.Key {
	t.Helper()
	k, err := agekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// secretLine is the AGE-SECRET-KEY line of k, to check it never leaks.
func secretLine(t *testing.T, k *agekey.Key) string {
	t.Helper()
	for _, l := range strings.Split(string(k.File()), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-1") {
			return l
		}
	}
	t.Fatal("no secret line in key file")
	return ""
}

// mixed exercises sops' value types, lists, nesting, comments and the
// unencrypted suffix, so Verify's MAC walk is checked against sops' own.
const mixed = `# top comment
example:
    api_token: tok
    user_password: pw
nested:
    deeper:
        n: 42
        f: 1.5
        yes: true
        no: false
        empty: ""
        nothing: null
    list:
        - a
        # comment in a list
        - 7
        - {k: v}
plain_unencrypted: visible
port_unencrypted: 8080
`

func TestVerify(t *testing.T) {
	right, wrong := newKey(t), newKey(t)
	for _, tc := range []struct{ name, plain string }{{"demo", sopsfile.DemoSecrets}, {"mixed types", mixed}} {
		enc, err := sopsfile.Encrypt([]byte(tc.plain), right.Recipient())
		if err != nil {
			t.Fatal(err)
		}
		t.Run(tc.name+"/right key verifies", func(t *testing.T) {
			res, err := agekey.Verify(right, enc, "secrets.yaml")
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if res.Checked != "values+mac" || res.Values < 2 || res.Recipient != right.Recipient() {
				t.Errorf("result %+v", res)
			}
			// Cross-check with the sops library itself.
			if _, err := sopsfile.Decrypt(enc, right.Identity()); err != nil {
				t.Errorf("sops library cannot decrypt: %v", err)
			}
		})
		t.Run(tc.name+"/wrong key fails without the key", func(t *testing.T) {
			_, err := agekey.Verify(wrong, enc, "secrets.yaml")
			if err == nil {
				t.Fatal("wrong key verified")
			}
			msg := err.Error()
			if errs.Code(err) != 2 || !strings.Contains(msg, "secrets.yaml") || !strings.Contains(msg, right.Recipient()) || !strings.Contains(msg, "cannot decrypt") {
				t.Errorf("message: %s", msg)
			}
			for _, k := range []*agekey.Key{right, wrong} {
				if s := secretLine(t, k); strings.Contains(msg, s[:30]) || strings.Contains(msg, "AGE-SECRET-KEY") {
					t.Fatalf("error leaks a private key: %s", msg)
				}
			}
			if _, err := sopsfile.Decrypt(enc, wrong.Identity()); err == nil || strings.Contains(err.Error(), "AGE-SECRET-KEY") {
				t.Errorf("sopsfile.Decrypt with wrong key: %v", err)
			}
		})
	}
}

func TestVerifyTampered(t *testing.T) {
	k := newKey(t)
	enc, err := sopsfile.Encrypt([]byte(sopsfile.DemoSecrets), k.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(enc), "\n")
	var tok, pw int
	for i, l := range lines {
		if strings.Contains(l, "api_token:") {
			tok = i
		}
		if strings.Contains(l, "user_password:") {
			pw = i
		}
	}
	// Swap the two encrypted values: each still decrypts with the data key,
	// but not under the other's path (additional data) -> must fail.
	swapped := append([]string{}, lines...)
	swapped[tok] = "    api_token:" + strings.SplitN(lines[pw], ":", 2)[1]
	swapped[pw] = "    user_password:" + strings.SplitN(lines[tok], ":", 2)[1]
	for name, data := range map[string]string{
		"swapped values": strings.Join(swapped, "\n"),
		"changed mac":    strings.Replace(string(enc), "mac: ENC[AES256_GCM,data:", "mac: ENC[AES256_GCM,data:AAAA", 1),
		"plain file":     "example:\n    api_token: x\n",
		"not yaml":       "\x00\x01: [",
	} {
		if _, err := agekey.Verify(k, []byte(data), "secrets.yaml"); err == nil || errs.Code(err) != 2 {
			t.Errorf("%s: Verify = %v, want an input error", name, err)
		}
	}
}

func TestVerifyExampleSecretsNeedTheirKey(t *testing.T) {
	data, err := os.ReadFile("../examples/nix-los/secrets/secrets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = agekey.Verify(newKey(t), data, "secrets/secrets.yaml")
	if err == nil || !strings.Contains(err.Error(), "encrypted for age1") {
		t.Fatalf("a fresh key verified the committed example (or bad message): %v", err)
	}
}

func TestLoadNotAnIdentity(t *testing.T) {
	dir := t.TempDir()
	k := newKey(t)
	secret := secretLine(t, k)
	for name, content := range map[string]string{
		"text":             "hello world\n",
		"recipient only":   k.Recipient() + "\n",
		"truncated secret": secret[:len(secret)-3] + "\n",
		"two keys":         secret + "\n" + secret + "\n",
		"ssh key":          "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
		"empty":            "",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		os.WriteFile(p, []byte(content), 0o600)
		_, err := agekey.Load(p)
		if err == nil {
			t.Errorf("%s: loaded", name)
			continue
		}
		msg := err.Error()
		if errs.Code(err) != 2 || !strings.Contains(msg, p) || !strings.Contains(msg, "not an age identity") {
			t.Errorf("%s: %s", name, msg)
		}
		if strings.Contains(msg, secret[:30]) || (content != "" && strings.Contains(msg, strings.TrimSpace(content))) {
			t.Errorf("%s: error quotes the file: %s", name, msg)
		}
	}
	if _, err := agekey.Load(filepath.Join(dir, "missing")); errs.Code(err) != 2 {
		t.Errorf("missing file: %v", err)
	}
}

func TestWriteAndLoad(t *testing.T) {
	k := newKey(t)
	p := filepath.Join(t.TempDir(), "sub", "age.key")
	if err := agekey.Write(p, k); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	got, err := agekey.Load(p)
	if err != nil || got.Recipient() != k.Recipient() {
		t.Fatalf("Load = %v, %v", got, err)
	}
	if strings.Contains(k.String(), "AGE-SECRET") || !strings.Contains(k.String(), k.Recipient()) {
		t.Errorf("String() = %q", k.String())
	}
}

func TestInstallModes(t *testing.T) {
	testenv.Root(t)
	k := newKey(t)
	root := t.TempDir()
	// A pre-existing, too-open parent must be tightened.
	os.MkdirAll(filepath.Join(root, "var/lib/sops-nix"), 0o755)
	dst, err := agekey.Install(root, "/var/lib/sops-nix/key.txt", k)
	if err != nil {
		t.Fatal(err)
	}
	if dst != filepath.Join(root, "var/lib/sops-nix/key.txt") {
		t.Errorf("dst %s", dst)
	}
	check := func(p string, mode os.FileMode) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %o, want %o", p, st.Mode().Perm(), mode)
		}
		if s := st.Sys().(*syscall.Stat_t); s.Uid != 0 || s.Gid != 0 {
			t.Errorf("%s: owner %d:%d, want root", p, s.Uid, s.Gid)
		}
	}
	check(dst, 0o600)
	check(filepath.Dir(dst), 0o700)
	if got, err := agekey.Load(dst); err != nil || got.Recipient() != k.Recipient() {
		t.Errorf("installed key: %v %v", got, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 1 {
		t.Errorf("leftover files next to the key: %v", entries)
	}
	// Fresh tree, other key path.
	dst2, err := agekey.Install(t.TempDir(), "/root/.config/sops/age/keys.txt", k)
	if err != nil {
		t.Fatal(err)
	}
	check(dst2, 0o600)
	check(filepath.Dir(dst2), 0o700)
	if _, err := agekey.Install(root, "relative/key.txt", k); errs.Code(err) != 2 {
		t.Errorf("relative key path: %v", err)
	}
}

// TestRecipients: the recipients of a sops file are read from its metadata
// without a key, in the file's order; a file that is not sops is an error.
func TestRecipients(t *testing.T) {
	a, b := newKey(t), newKey(t)
	enc, err := sopsfile.Encrypt([]byte(sopsfile.DemoSecrets), a.Recipient(), b.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want []string
		ok   bool
	}{
		{"two recipients", enc, []string{a.Recipient(), b.Recipient()}, true},
		{"plain YAML", []byte("a: 1\n"), nil, false},
		{"not a mapping", []byte("- 1\n"), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := agekey.Recipients(tc.data)
			if (err == nil) != tc.ok || strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("Recipients = %v, %v; want %v (ok %v)", got, err, tc.want, tc.ok)
			}
		})
	}
}

package agekey_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/agekey/sopsfile"
)

func TestValue(t *testing.T) {
	right, wrong := newKey(t), newKey(t)
	plain := sopsfile.DemoSecretsWithLUKS("s3cret-pass") + "plain_unencrypted: visible\n"
	enc, err := sopsfile.Encrypt([]byte(plain), right.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
		noValue    bool
	}{
		{"luks.crypted", "s3cret-pass", false},
		{"example.api_token", "demo-api-token-not-a-real-secret", false},
		{"plain_unencrypted", "visible", false},
		{"luks.other", "", true},
		{"nosuch", "", true},
	} {
		got, err := agekey.Value(right, enc, "secrets.yaml", tc.path)
		if tc.noValue {
			if !errors.Is(err, agekey.ErrNoValue) {
				t.Errorf("%s: err = %v, want ErrNoValue", tc.path, err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
	if _, err := agekey.Value(right, enc, "secrets.yaml", "luks"); err == nil {
		t.Error("a mapping as value: no error")
	}
	_, err = agekey.Value(wrong, enc, "secrets.yaml", "luks.crypted")
	if err == nil {
		t.Fatal("wrong key decrypted the value")
	}
	if strings.Contains(err.Error(), secretLine(t, wrong)) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks a secret: %v", err)
	}
	// A tampered value fails its GCM tag.
	bad := strings.Replace(string(enc), "crypted: ENC[AES256_GCM,data:", "crypted: ENC[AES256_GCM,data:AA", 1)
	if _, err := agekey.Value(right, []byte(bad), "secrets.yaml", "luks.crypted"); err == nil {
		t.Error("tampered value decrypted")
	}
}

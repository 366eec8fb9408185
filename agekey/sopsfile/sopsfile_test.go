package sopsfile

import (
	"strings"
	"testing"

	"filippo.io/age"
	"gopkg.in/yaml.v3"
)

func TestEncryptDecryptReencrypt(t *testing.T) {
	a, _ := age.GenerateX25519Identity()
	b, _ := age.GenerateX25519Identity()
	enc, err := Encrypt([]byte(DemoSecrets), a.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(enc), "demo-api-token") {
		t.Fatal("plaintext in encrypted file")
	}
	for _, want := range []string{"api_token: ENC[AES256_GCM,", "sops:", "recipient: " + a.Recipient().String(), "unencrypted_suffix: _unencrypted", "-----BEGIN AGE ENCRYPTED FILE-----"} {
		if !strings.Contains(string(enc), want) {
			t.Errorf("encrypted file lacks %q", want)
		}
	}
	plain, err := Decrypt(enc, a)
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	yaml.Unmarshal(plain, &got)
	yaml.Unmarshal([]byte(DemoSecrets), &want)
	if got["example"].(map[string]any)["api_token"] != want["example"].(map[string]any)["api_token"] {
		t.Errorf("round trip: %s", plain)
	}
	if _, err := Decrypt(enc, b); err == nil || !strings.Contains(err.Error(), a.Recipient().String()) || strings.Contains(err.Error(), "AGE-SECRET-KEY") {
		t.Errorf("wrong key: %v", err)
	}
	re, err := Reencrypt(enc, a, b.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decrypt(re, b); err != nil {
		t.Errorf("re-encrypted file does not open with the new key: %v", err)
	}
	if _, err := Decrypt(re, a); err == nil {
		t.Errorf("re-encrypted file still opens with the old key")
	}
	if _, err := Encrypt([]byte("a: b\n")); err == nil {
		t.Errorf("encrypt without recipients succeeded")
	}
	if _, err := Encrypt([]byte("a: b\n"), "age1notarecipient"); err == nil {
		t.Errorf("bad recipient accepted")
	}
}

func TestConfig(t *testing.T) {
	var c struct {
		Keys          []string `yaml:"keys"`
		CreationRules []struct {
			PathRegex string `yaml:"path_regex"`
			KeyGroups []struct {
				Age []string `yaml:"age"`
			} `yaml:"key_groups"`
		} `yaml:"creation_rules"`
	}
	if err := yaml.Unmarshal(Config("age1aaa", "age1bbb"), &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Keys) != 2 || len(c.CreationRules) != 1 || strings.Join(c.CreationRules[0].KeyGroups[0].Age, ",") != "age1aaa,age1bbb" {
		t.Errorf("config %+v", c)
	}
}

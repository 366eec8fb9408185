package agekey_test

import (
	"strings"
	"testing"

	"github.com/nixlos/nixlos/agekey"
	"github.com/nixlos/nixlos/agekey/sopsfile"
)

// FuzzVerify: any file content must give a result or an error, never a
// panic, and never an error that contains the private key.
func FuzzVerify(f *testing.F) {
	k, err := agekey.Generate()
	if err != nil {
		f.Fatal(err)
	}
	enc, err := sopsfile.Encrypt([]byte(sopsfile.DemoSecrets), k.Recipient())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte("sops:\n  age: []\n"))
	f.Add([]byte("sops:\n  age:\n    - recipient: x\n      enc: y\n  lastmodified: nope\n"))
	f.Add([]byte("a: ENC[AES256_GCM,data:,iv:,tag:,type:str]\nsops: {mac: x}\n"))
	f.Add([]byte("[1, 2]"))
	secret := strings.TrimSpace(strings.Split(string(k.File()), "\n")[2])
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := agekey.Verify(k, data, "f.yaml")
		if err != nil && strings.Contains(err.Error(), secret[:30]) {
			t.Fatalf("error leaks the key")
		}
	})
}

// FuzzParse: the identity parser never panics nor echoes its input.
func FuzzParse(f *testing.F) {
	k, _ := agekey.Generate()
	f.Add(k.File())
	f.Add([]byte("AGE-SECRET-KEY-1QQQ\n"))
	f.Add([]byte("# only a comment\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := agekey.Parse(data)
		if err != nil {
			if len(data) > 20 && strings.Contains(err.Error(), string(data)) {
				t.Fatalf("error echoes input")
			}
			return
		}
		again, err := agekey.Parse(got.File())
		if err != nil || again.Recipient() != got.Recipient() {
			t.Fatalf("round trip: %v", err)
		}
	})
}

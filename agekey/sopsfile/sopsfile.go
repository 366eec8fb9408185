// Package sopsfile encrypts and decrypts sops YAML files for age recipients
// with the sops library, in memory (no environment variables, no temporary
// files), producing the same format as the sops CLI. It adds ~40 MB to a
// binary, so only workstation-side commands import it; the installer checks
// keys with the sops-free agekey.Verify.
package sopsfile

import (
	"fmt"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	"github.com/getsops/sops/v3/config"
	"github.com/getsops/sops/v3/keys"
	"github.com/getsops/sops/v3/stores/yaml"
	"github.com/getsops/sops/v3/version"
)

func store() *yaml.Store { return yaml.NewStore(&config.NewStoresConfig().YAML) }

// Encrypt encrypts plaintext YAML for the age recipients (age1...), as
// `sops --encrypt --age R1,R2 file.yaml` does (default unencrypted suffix
// "_unencrypted", one key group).
func Encrypt(plain []byte, recipients ...string) ([]byte, error) {
	if len(recipients) == 0 {
		return nil, fmt.Errorf("sops encrypt: no age recipient")
	}
	st := store()
	branches, err := st.LoadPlainFile(plain)
	if err != nil {
		return nil, fmt.Errorf("sops encrypt: parse YAML: %w", err)
	}
	mks, err := sopsage.MasterKeysFromRecipients(strings.Join(recipients, ","))
	if err != nil {
		return nil, fmt.Errorf("sops encrypt: age recipients: %w", err)
	}
	var group sops.KeyGroup
	for _, k := range mks {
		group = append(group, keys.MasterKey(k))
	}
	tree := sops.Tree{
		Branches: branches,
		Metadata: sops.Metadata{
			KeyGroups:         []sops.KeyGroup{group},
			UnencryptedSuffix: sops.DefaultUnencryptedSuffix,
			Version:           version.Version,
		},
	}
	dataKey, errs := tree.GenerateDataKey()
	if len(errs) > 0 {
		return nil, fmt.Errorf("sops encrypt: data key: %v", errs)
	}
	return encryptTree(st, tree, dataKey)
}

func encryptTree(st *yaml.Store, tree sops.Tree, dataKey []byte) ([]byte, error) {
	cipher := aes.NewCipher()
	tree.Metadata.LastModified = time.Now().UTC()
	mac, err := tree.Encrypt(dataKey, cipher)
	if err != nil {
		return nil, fmt.Errorf("sops encrypt: %w", err)
	}
	tree.Metadata.MessageAuthenticationCode, err = cipher.Encrypt(mac, dataKey, tree.Metadata.LastModified.Format(time.RFC3339))
	if err != nil {
		return nil, fmt.Errorf("sops encrypt: mac: %w", err)
	}
	out, err := st.EmitEncryptedFile(tree)
	if err != nil {
		return nil, fmt.Errorf("sops encrypt: emit: %w", err)
	}
	return out, nil
}

// Decrypt decrypts a sops YAML file with the age identity and checks its
// MAC, returning the plaintext YAML. A wrong identity gives an error that
// names the file's recipients, never the identity.
func Decrypt(enc []byte, id age.Identity) ([]byte, error) {
	st := store()
	tree, err := open(st, enc, id)
	if err != nil {
		return nil, err
	}
	out, err := st.EmitPlainFile(tree.Branches)
	if err != nil {
		return nil, fmt.Errorf("sops decrypt: emit: %w", err)
	}
	return out, nil
}

// open loads, decrypts and MAC-checks a sops YAML file.
func open(st *yaml.Store, enc []byte, id age.Identity) (sops.Tree, error) {
	tree, err := st.LoadEncryptedFile(enc)
	if err != nil {
		return sops.Tree{}, fmt.Errorf("sops decrypt: %w", err)
	}
	ids := sopsage.ParsedIdentities{id}
	var dataKey []byte
	var recipients []string
	for _, g := range tree.Metadata.KeyGroups {
		for _, k := range g {
			mk, ok := k.(*sopsage.MasterKey)
			if !ok {
				continue
			}
			recipients = append(recipients, mk.Recipient)
			if dataKey != nil {
				continue
			}
			ids.ApplyToMasterKey(mk)
			if dk, err := mk.Decrypt(); err == nil {
				dataKey = dk
			}
		}
	}
	if dataKey == nil {
		return sops.Tree{}, fmt.Errorf("sops decrypt: the age key is not a recipient of this file (recipients: %s)", strings.Join(recipients, ", "))
	}
	cipher := aes.NewCipher()
	mac, err := tree.Decrypt(dataKey, cipher)
	if err != nil {
		return sops.Tree{}, fmt.Errorf("sops decrypt: %w", err)
	}
	orig, err := cipher.Decrypt(tree.Metadata.MessageAuthenticationCode, dataKey, tree.Metadata.LastModified.Format(time.RFC3339))
	if err != nil {
		return sops.Tree{}, fmt.Errorf("sops decrypt: mac: %w", err)
	}
	if orig != mac {
		return sops.Tree{}, fmt.Errorf("sops decrypt: MAC mismatch (file tampered)")
	}
	return tree, nil
}

// DemoSecrets is the plaintext of the example flake's secrets/secrets.yaml:
// dummy values, public on purpose (the demo encrypts them for its own key).
const DemoSecrets = `# nix-los example secrets: dummy values, encrypted with sops for age.
example:
    api_token: demo-api-token-not-a-real-secret
    user_password: demo-password-not-a-real-secret
`

// DemoSecretsWithLUKS is DemoSecrets plus the passphrase of the example
// laptop's LUKS container "crypted" at luks.crypted, where the installer
// looks for a LUKS key file the layout names but the live system lacks.
func DemoSecretsWithLUKS(passphrase string) string {
	return DemoSecrets + "luks:\n    crypted: " + passphrase + "\n"
}

// Reencrypt decrypts enc with id and encrypts the plaintext again for the
// recipients (a new data key, as `sops updatekeys` plus `sops rotate`).
func Reencrypt(enc []byte, id age.Identity, recipients ...string) ([]byte, error) {
	plain, err := Decrypt(enc, id)
	if err != nil {
		return nil, err
	}
	return Encrypt(plain, recipients...)
}

// Config is a .sops.yaml that sends every secrets/*.yaml file to the recipients.
func Config(recipients ...string) []byte {
	var b strings.Builder
	b.WriteString("# sops creation rules: which age keys secrets/*.yaml are encrypted for.\n")
	b.WriteString("# Written by nixlos; edit with care (sops updatekeys after a change).\n")
	b.WriteString("keys:\n")
	for i, r := range recipients {
		fmt.Fprintf(&b, "  - &host%d %s\n", i+1, r)
	}
	b.WriteString("creation_rules:\n  - path_regex: secrets/[^/]+\\.(yaml|json|env|ini)$\n    key_groups:\n      - age:\n")
	for i := range recipients {
		fmt.Fprintf(&b, "          - *host%d\n", i+1)
	}
	return []byte(b.String())
}

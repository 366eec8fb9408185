package agekey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
	"gopkg.in/yaml.v3"

	"github.com/nixlos/nixlos/internal/errs"
)

// Result tells what Verify checked.
type Result struct {
	Recipient string // the key's public key
	Values    int    // encrypted values decrypted and checked against the MAC (0: see Checked)
	Checked   string // "values+mac" or "mac" (file uses options where only the MAC is checked)
}

// sopsMeta is the part of a sops file's `sops:` section Verify reads.
type sopsMeta struct {
	Age       []ageEntry `yaml:"age"`
	KeyGroups []struct {
		Age []ageEntry `yaml:"age"`
	} `yaml:"key_groups"`
	LastModified          string `yaml:"lastmodified"`
	MAC                   string `yaml:"mac"`
	ShamirThreshold       int    `yaml:"shamir_threshold"`
	UnencryptedSuffix     string `yaml:"unencrypted_suffix"`
	EncryptedSuffix       string `yaml:"encrypted_suffix"`
	UnencryptedRegex      string `yaml:"unencrypted_regex"`
	EncryptedRegex        string `yaml:"encrypted_regex"`
	UnencryptedCommentRgx string `yaml:"unencrypted_comment_regex"`
	EncryptedCommentRgx   string `yaml:"encrypted_comment_regex"`
	MACOnlyEncrypted      bool   `yaml:"mac_only_encrypted"`
}

type ageEntry struct {
	Recipient string `yaml:"recipient"`
	Enc       string `yaml:"enc"`
}

// Verify checks, in memory, that k decrypts the sops file data (YAML or
// JSON; name is used in messages): it opens the file's data key with the
// age key, authenticates the file's MAC with that data key (AES-GCM), and,
// for files with sops' default options, decrypts every value and compares
// their digest with the MAC, as sops does. A key that is not a recipient is
// an input error (exit 2) naming the file's recipients; the key itself never
// appears in an error.
func Verify(k *Key, data []byte, name string) (Result, error) {
	res := Result{Recipient: k.Recipient()}
	root, meta, err := parseSops(data)
	switch {
	case errors.Is(err, errNotMapping):
		return res, errs.BadInput(name, "give the host's sops-encrypted YAML or JSON file", "not a YAML/JSON mapping")
	case errors.Is(err, errNoMeta):
		return res, errs.BadInput(name, "encrypt it with sops (sops --encrypt --age RECIPIENT)", "not a sops-encrypted file (no sops metadata)")
	case err != nil:
		return res, errs.BadInput(name, "re-encrypt it with sops", "%v", err)
	}
	entries := meta.ageEntries()
	if len(entries) == 0 {
		return res, errs.BadInput(name, "add an age recipient: sops updatekeys with an age key in .sops.yaml", "not encrypted for any age recipient")
	}
	if meta.ShamirThreshold > 1 {
		return res, errs.BadInput(name, "use a single key group", "uses Shamir secret sharing (threshold %d), which one age key cannot open", meta.ShamirThreshold)
	}
	var dataKey []byte
	var recipients []string
	for _, e := range entries {
		recipients = append(recipients, e.Recipient)
		if dataKey != nil {
			continue
		}
		r, err := age.Decrypt(armor.NewReader(strings.NewReader(e.Enc)), k.id)
		if err != nil {
			continue
		}
		dk, err := io.ReadAll(r)
		if err == nil && len(dk) == 32 {
			dataKey = dk
		}
	}
	if dataKey == nil {
		return res, errs.BadInput(name,
			fmt.Sprintf("use the key of one of those recipients, or re-encrypt the file for %s", k.Recipient()),
			"age key %s cannot decrypt it: the file is encrypted for %s", k.Recipient(), strings.Join(recipients, ", "))
	}
	lm, err := time.Parse(time.RFC3339, meta.LastModified)
	if err != nil {
		return res, errs.BadInput(name, "re-encrypt it with sops", "sops lastmodified %q is not an RFC 3339 time", meta.LastModified)
	}
	mac, _, err := decryptValue(meta.MAC, dataKey, lm.Format(time.RFC3339))
	if err != nil {
		return res, errs.BadInput(name, "restore the file from git or re-encrypt it with sops", "its MAC does not authenticate with the data key the age key opened (file corrupted or tampered): %v", err)
	}
	if meta.EncryptedSuffix != "" || meta.UnencryptedRegex != "" || meta.EncryptedRegex != "" ||
		meta.UnencryptedCommentRgx != "" || meta.EncryptedCommentRgx != "" || meta.MACOnlyEncrypted {
		res.Checked = "mac"
		return res, nil
	}
	w := &macWalker{key: dataKey, suffix: meta.UnencryptedSuffix, h: sha512.New()}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "sops" {
			continue
		}
		if err := w.walk(root.Content[i+1], []string{root.Content[i].Value}, false); err != nil {
			return res, errs.BadInput(name, "restore the file from git or re-encrypt it with sops", "%v", err)
		}
	}
	if got := fmt.Sprintf("%X", w.h.Sum(nil)); got != string(mac) {
		return res, errs.BadInput(name, "restore the file from git or re-encrypt it with sops", "values do not match the file's MAC (file tampered)")
	}
	res.Values, res.Checked = w.n, "values+mac"
	return res, nil
}

var (
	errNotMapping = errors.New("not a YAML/JSON mapping")
	errNoMeta     = errors.New("not a sops-encrypted file (no sops metadata)")
)

// parseSops reads a sops file: its top-level mapping and its sops metadata.
func parseSops(data []byte) (*yaml.Node, *sopsMeta, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil, errNotMapping
	}
	root := doc.Content[0]
	var meta *sopsMeta
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "sops" {
			meta = new(sopsMeta)
			if err := root.Content[i+1].Decode(meta); err != nil {
				return nil, nil, fmt.Errorf("malformed sops metadata: %v", err)
			}
		}
	}
	if meta == nil {
		return nil, nil, errNoMeta
	}
	return root, meta, nil
}

// ageEntries are the file's age recipients with their wrapped data keys:
// the top-level list, then each key group's.
func (m *sopsMeta) ageEntries() []ageEntry {
	entries := append([]ageEntry(nil), m.Age...)
	for _, g := range m.KeyGroups {
		entries = append(entries, g.Age...)
	}
	return entries
}

// Recipients returns the age recipients (public keys) the sops file data
// is encrypted for, as its sops metadata lists them; an error when data is
// not a sops file. It needs no key: mkiso build names them when a key
// opens nothing.
func Recipients(data []byte) ([]string, error) {
	_, meta, err := parseSops(data)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range meta.ageEntries() {
		out = append(out, e.Recipient)
	}
	return out, nil
}

// macWalker decrypts the values of a sops tree in document order and feeds
// their plaintext to the MAC digest, as sops' Tree.Decrypt does (map keys
// join the path; list items keep their parent's path).
type macWalker struct {
	key    []byte
	suffix string
	h      hash.Hash
	n      int
}

func (w *macWalker) walk(n *yaml.Node, path []string, plain bool) error {
	if w.suffix != "" && strings.HasSuffix(path[len(path)-1], w.suffix) {
		plain = true
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := append(append([]string{}, path...), n.Content[i].Value)
			if err := w.walk(n.Content[i+1], p, plain); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if err := w.walk(c, path, plain); err != nil {
				return err
			}
		}
	case yaml.AliasNode:
		return w.walk(n.Alias, path, plain)
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		if plain {
			b, err := plainBytes(n)
			if err != nil {
				return fmt.Errorf("value at %s: %w", strings.Join(path, "."), err)
			}
			w.h.Write(b)
			return nil
		}
		if n.Value == "" {
			return nil
		}
		v, typ, err := decryptValue(n.Value, w.key, strings.Join(path, ":")+":")
		if err != nil {
			return fmt.Errorf("value at %s does not decrypt: %w", strings.Join(path, "."), err)
		}
		w.n++
		if typ != "comment" { // sops keeps list comments as values, outside the MAC
			w.h.Write(v)
		}
	}
	return nil
}

// plainBytes is sops' ToBytes of an unencrypted YAML scalar.
func plainBytes(n *yaml.Node) ([]byte, error) {
	switch n.Tag {
	case "!!str", "!!binary":
		return []byte(n.Value), nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, err
		}
		if b {
			return []byte("True"), nil
		}
		return []byte("False"), nil
	case "!!int":
		var i int
		if err := n.Decode(&i); err != nil {
			return nil, err
		}
		return []byte(strconv.Itoa(i)), nil
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, err
		}
		return []byte(strconv.FormatFloat(f, 'f', -1, 64)), nil
	}
	return nil, fmt.Errorf("unsupported unencrypted value type %s", n.Tag)
}

var encRe = regexp.MustCompile(`^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]`)

// errNotEncrypted: a value is not in sops' ENC[...] format.
var errNotEncrypted = errors.New("not a sops ENC[AES256_GCM,...] value")

// decryptValue opens one sops value (AES-256-GCM, additional data ad) and
// returns the plaintext bytes and the value's sops type (str, int, comment...).
func decryptValue(v string, key []byte, ad string) ([]byte, string, error) {
	m := encRe.FindStringSubmatch(v)
	if m == nil {
		return nil, "", errNotEncrypted
	}
	var parts [3][]byte
	for i := range parts {
		b, err := base64.StdEncoding.DecodeString(m[i+1])
		if err != nil {
			return nil, "", fmt.Errorf("malformed sops value: %w", err)
		}
		parts[i] = b
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, "", err
	}
	if len(parts[1]) == 0 {
		return nil, "", errors.New("malformed sops value: empty iv")
	}
	gcm, err := cipher.NewGCMWithNonceSize(block, len(parts[1]))
	if err != nil {
		return nil, "", err
	}
	out, err := gcm.Open(nil, parts[1], append(parts[0], parts[2]...), []byte(ad))
	if err != nil {
		return nil, "", errors.New("authentication failed")
	}
	return out, m[4], nil
}

package agekey

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
	"gopkg.in/yaml.v3"
)

// ErrNoValue: the sops file has no value at the requested path.
var ErrNoValue = errors.New("no such value in the sops file")

// Value decrypts the one value at the dotted YAML path (e.g.
// "luks.crypted") of the sops file data with k, in memory, and returns its
// plaintext. Call Verify first: Value checks the value's own GCM tag but not
// the file's MAC. A path that is absent gives an error wrapping ErrNoValue.
// Errors name the file and the path, never the key or the value.
func Value(k *Key, data []byte, name, path string) ([]byte, error) {
	root, meta, err := parseSops(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	keys := strings.Split(path, ".")
	node := root
	for _, key := range keys {
		var next *yaml.Node
		if node.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(node.Content); i += 2 {
				if node.Content[i].Value == key {
					next = node.Content[i+1]
				}
			}
		}
		if next == nil {
			return nil, fmt.Errorf("%s: %s: %w", name, path, ErrNoValue)
		}
		node = next
	}
	if node.Kind != yaml.ScalarNode {
		return nil, fmt.Errorf("%s: %s is not a single value", name, path)
	}
	if meta.UnencryptedSuffix != "" && strings.HasSuffix(keys[len(keys)-1], meta.UnencryptedSuffix) {
		return []byte(node.Value), nil
	}
	dataKey, err := openDataKey(k, meta)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	v, _, err := decryptValue(node.Value, dataKey, strings.Join(keys, ":")+":")
	if err != nil {
		return nil, fmt.Errorf("%s: value %s: %v", name, path, err)
	}
	return v, nil
}

// openDataKey opens the sops data key with k.
func openDataKey(k *Key, meta *sopsMeta) ([]byte, error) {
	for _, e := range meta.ageEntries() {
		r, err := age.Decrypt(armor.NewReader(strings.NewReader(e.Enc)), k.id)
		if err != nil {
			continue
		}
		dk, err := io.ReadAll(r)
		if err == nil && len(dk) == 32 {
			return dk, nil
		}
	}
	return nil, fmt.Errorf("age key %s is not a recipient of the file", k.Recipient())
}

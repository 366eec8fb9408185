// Package disko is disko's schema and rules: it decodes disko `devices` JSON
// (the fully evaluated form or the sparse hand-written form) into typed
// devices, fills disko's defaults (names, labels, partition devices, udev
// escaping), validates the layout and knows sgdisk's type codes. It reads
// no disk and plans nothing: package partition plans a layout, package
// partition/apply applies the plan.
package disko

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// Devices is disko's `disko.devices` value.
type Devices struct {
	Disk     map[string]*Disk           `json:"disk"`
	Mdadm    map[string]*MDArray        `json:"mdadm"`
	LVMVG    map[string]*VolumeGroup    `json:"lvm_vg"`
	Nodev    map[string]*Nodev          `json:"nodev"`
	Zpool    map[string]json.RawMessage `json:"zpool"`
	Bcachefs map[string]json.RawMessage `json:"bcachefs_filesystems"`
}

// Disk is a `disk` device.
type Disk struct {
	Key     string   `json:"-"` // attribute name under devices.disk
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Device  string   `json:"device"`
	Content *Content `json:"content"`
}

// MDArray is an `mdadm` device.
type MDArray struct {
	Key       string   `json:"-"`
	Type      string   `json:"type"`
	Name      string   `json:"name"`
	Level     *int     `json:"level"`
	Metadata  string   `json:"metadata"`
	ExtraArgs []string `json:"extraArgs"`
	Content   *Content `json:"content"`
}

// VolumeGroup is an `lvm_vg` device.
type VolumeGroup struct {
	Key  string                    `json:"-"`
	Type string                    `json:"type"`
	Name string                    `json:"name"`
	LVs  map[string]*LogicalVolume `json:"lvs"`
}

// LogicalVolume is one entry of lvm_vg.lvs.
type LogicalVolume struct {
	Key       string   `json:"-"`
	Name      string   `json:"name"`
	Priority  *int     `json:"priority"`
	Size      string   `json:"size"`
	LVMType   *string  `json:"lvm_type"`
	ExtraArgs []string `json:"extraArgs"`
	Pool      *string  `json:"pool"`
	Content   *Content `json:"content"`
}

// Nodev is a `nodev` filesystem (tmpfs and friends).
type Nodev struct {
	Key          string    `json:"-"`
	Type         string    `json:"type"`
	FSType       string    `json:"fsType"`
	Device       string    `json:"device"`
	Mountpoint   OptString `json:"mountpoint"`
	MountOptions []string  `json:"mountOptions"`
}

// OptString is a JSON string that may be absent (Set false), null (Value nil)
// or a string: disko's nodev mountpoint defaults only when absent.
type OptString struct {
	Set   bool
	Value *string
}

// UnmarshalJSON records that the field was present.
func (o *OptString) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Value = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	o.Value = &s
	return nil
}

// Content is any of disko's content types; Type says which fields apply.
type Content struct {
	Type   string `json:"type"`
	Device string `json:"device"`

	// gpt and table
	RawPartitions        json.RawMessage   `json:"partitions"`
	EfiGptPartitionFirst *bool             `json:"efiGptPartitionFirst"`
	GPTPartitions        []*GPTPartition   `json:"-"` // gpt, in attribute-name order
	TablePartitions      []*TablePartition `json:"-"` // table, in list order

	// filesystem (format also: table's "gpt"/"msdos"), btrfs, swap
	Format       string   `json:"format"`
	ExtraArgs    []string `json:"extraArgs"`
	MountOptions []string `json:"mountOptions"`
	Mountpoint   *string  `json:"mountpoint"`

	// btrfs
	Subvolumes map[string]*Subvolume `json:"subvolumes"`
	Swap       map[string]*SwapFile  `json:"swap"`

	// swap
	DiscardPolicy    *string `json:"discardPolicy"`
	Priority         *int    `json:"priority"`
	RandomEncryption bool    `json:"randomEncryption"`
	ResumeDevice     bool    `json:"resumeDevice"`

	// luks (name also: mdraid)
	Name               string         `json:"name"`
	KeyFile            *string        `json:"keyFile"`
	PasswordFile       *string        `json:"passwordFile"`
	AskPassword        *bool          `json:"askPassword"`
	Settings           map[string]any `json:"settings"`
	AdditionalKeyFiles []string       `json:"additionalKeyFiles"`
	InitrdUnlock       *bool          `json:"initrdUnlock"`
	ExtraFormatArgs    []string       `json:"extraFormatArgs"`
	ExtraOpenArgs      []string       `json:"extraOpenArgs"`
	Content            *Content       `json:"content"`

	// lvm_pv
	VG string `json:"vg"`
}

// GPTPartition is one partition of a `gpt` table.
type GPTPartition struct {
	Key        string       `json:"-"`
	Type       string       `json:"type"`
	Attributes []int        `json:"attributes"`
	Device     string       `json:"device"`
	Priority   *int         `json:"priority"`
	Name       string       `json:"name"`
	UUID       *string      `json:"uuid"`
	Label      string       `json:"label"`
	Size       string       `json:"size"`
	Alignment  *int         `json:"alignment"`
	Start      string       `json:"start"`
	End        string       `json:"end"`
	Content    *Content     `json:"content"`
	Hybrid     *HybridEntry `json:"hybrid"`
	Index      int          `json:"-"` // disko's _index, 1-based
}

// HybridEntry puts a GPT partition into a hybrid MBR.
type HybridEntry struct {
	MBRPartitionType *string `json:"mbrPartitionType"`
	MBRBootableFlag  bool    `json:"mbrBootableFlag"`
}

// TablePartition is one partition of the legacy `table` type (parted).
type TablePartition struct {
	PartType string   `json:"part-type"`
	FSType   *string  `json:"fs-type"`
	Name     *string  `json:"name"`
	Start    string   `json:"start"`
	End      string   `json:"end"`
	Flags    []string `json:"flags"`
	Bootable bool     `json:"bootable"`
	Content  *Content `json:"content"`
	Index    int      `json:"-"`
}

// Subvolume is a btrfs subvolume.
type Subvolume struct {
	Key          string               `json:"-"`
	Name         string               `json:"name"`
	ExtraArgs    []string             `json:"extraArgs"`
	MountOptions []string             `json:"mountOptions"`
	Mountpoint   *string              `json:"mountpoint"`
	Swap         map[string]*SwapFile `json:"swap"`
}

// SwapFile is a btrfs swap file.
type SwapFile struct {
	Key      string   `json:"-"`
	Size     string   `json:"size"`
	Path     string   `json:"path"`
	Priority *int     `json:"priority"`
	Options  []string `json:"options"`
}

// ErrNotSupported marks layouts nixlos cannot lay out yet (zfs, bcachefs).
var ErrNotSupported = errors.New("not supported yet")

// Decode parses disko devices JSON in either form. It accepts the devices
// object itself or one wrapped as {"disko": {"devices": …}} or {"devices": …}.
// It does not fill defaults; see Normalize.
func Decode(data []byte) (*Devices, error) {
	data = unwrap(data)
	var d Devices
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("decode disko devices: %w", err)
	}
	if len(d.Zpool) > 0 {
		return nil, fmt.Errorf("zpool %s: zfs pools are %w", firstKey(d.Zpool), ErrNotSupported)
	}
	if len(d.Bcachefs) > 0 {
		return nil, fmt.Errorf("bcachefs_filesystems %s: bcachefs is %w", firstKey(d.Bcachefs), ErrNotSupported)
	}
	if err := d.decodeNested(); err != nil {
		return nil, err
	}
	return &d, nil
}

func firstKey[V any](m map[string]V) string {
	keys := sortedKeys(m)
	return keys[0]
}

// unwrap strips {"disko": {"devices": …}} and {"devices": …} wrappers.
func unwrap(data []byte) []byte {
	for _, k := range []string{"disko", "devices"} {
		if !bytes.Contains(data, []byte(`"`+k+`"`)) {
			continue
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) != nil {
			return data
		}
		if inner, ok := m[k]; ok && len(m) == 1 {
			data = inner
		}
	}
	return data
}

// decodeNested decodes partitions (whose JSON shape depends on the table
// type) and records attribute names, for every content in the tree.
func (d *Devices) decodeNested() error {
	for _, k := range sortedKeys(d.Disk) {
		disk := d.Disk[k]
		if disk == nil {
			return fmt.Errorf("disk %s: empty definition", k)
		}
		disk.Key = k
		if err := decodeContent(disk.Content, "disk."+k); err != nil {
			return err
		}
	}
	for _, k := range sortedKeys(d.Mdadm) {
		md := d.Mdadm[k]
		if md == nil {
			return fmt.Errorf("mdadm %s: empty definition", k)
		}
		md.Key = k
		if err := decodeContent(md.Content, "mdadm."+k); err != nil {
			return err
		}
	}
	for _, k := range sortedKeys(d.LVMVG) {
		vg := d.LVMVG[k]
		if vg == nil {
			return fmt.Errorf("lvm_vg %s: empty definition", k)
		}
		vg.Key = k
		for _, lk := range sortedKeys(vg.LVs) {
			lv := vg.LVs[lk]
			if lv == nil {
				return fmt.Errorf("lvm_vg.%s.lvs.%s: empty definition", k, lk)
			}
			lv.Key = lk
			if err := decodeContent(lv.Content, "lvm_vg."+k+".lvs."+lk); err != nil {
				return err
			}
		}
	}
	for _, k := range sortedKeys(d.Nodev) {
		if d.Nodev[k] == nil {
			return fmt.Errorf("nodev %s: empty definition", k)
		}
		d.Nodev[k].Key = k
	}
	return nil
}

func decodeContent(c *Content, path string) error {
	if c == nil {
		return nil
	}
	switch c.Type {
	case "gpt":
		if err := decodeGPTPartitions(c, path); err != nil {
			return err
		}
	case "table":
		if err := decodeTablePartitions(c, path); err != nil {
			return err
		}
	case "btrfs":
		for _, k := range sortedKeys(c.Subvolumes) {
			if c.Subvolumes[k] == nil {
				c.Subvolumes[k] = &Subvolume{}
			}
			c.Subvolumes[k].Key = k
			setSwapKeys(c.Subvolumes[k].Swap)
		}
		setSwapKeys(c.Swap)
	}
	return decodeContent(c.Content, path+".content")
}

func setSwapKeys(m map[string]*SwapFile) {
	for k, s := range m {
		if s == nil {
			s = &SwapFile{}
			m[k] = s
		}
		s.Key = k
	}
}

func decodeGPTPartitions(c *Content, path string) error {
	if len(c.RawPartitions) == 0 || string(c.RawPartitions) == "null" {
		return nil
	}
	var m map[string]*GPTPartition
	if err := json.Unmarshal(c.RawPartitions, &m); err != nil {
		return fmt.Errorf("%s.partitions: gpt partitions must be an object of named partitions: %w", path, err)
	}
	for _, k := range sortedKeys(m) {
		p := m[k]
		if p == nil {
			p = &GPTPartition{}
		}
		p.Key = k
		if err := decodeContent(p.Content, path+".partitions."+k+".content"); err != nil {
			return err
		}
		c.GPTPartitions = append(c.GPTPartitions, p)
	}
	return nil
}

func decodeTablePartitions(c *Content, path string) error {
	if len(c.RawPartitions) == 0 || string(c.RawPartitions) == "null" {
		return nil
	}
	var l []*TablePartition
	if err := json.Unmarshal(c.RawPartitions, &l); err != nil {
		return fmt.Errorf("%s.partitions: table partitions must be a list: %w", path, err)
	}
	for i, p := range l {
		if p == nil {
			p = &TablePartition{}
		}
		p.Index = i + 1
		if err := decodeContent(p.Content, fmt.Sprintf("%s.partitions[%d].content", path, i)); err != nil {
			return err
		}
		c.TablePartitions = append(c.TablePartitions, p)
	}
	return nil
}

// sortedKeys returns m's keys in byte order (Nix attribute-name order).
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Load decodes and normalizes a layout: Decode, then Normalize.
func Load(data []byte) (*Devices, error) {
	d, err := Decode(data)
	if err != nil {
		return nil, err
	}
	if err := Normalize(d); err != nil {
		return nil, err
	}
	return d, nil
}

package partition

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nixlos/nixlos/disko"
)

// toposort is nixpkgs' lib.toposort: repeatedly take the first element
// with nothing before it (found by a depth-first walk), keeping the input
// order otherwise. before(a, b) means a must come before b.
func toposort[T any](list []T, before func(a, b T) bool) ([]T, error) {
	var out []T
	for len(list) >= 2 {
		minimal, rest, err := listDfs(list, before)
		if err != nil {
			return nil, err
		}
		out = append(out, minimal)
		list = rest
	}
	return append(out, list...), nil
}

// listDfs is nixpkgs' listDfs with stopOnCycles: it returns the minimal
// element and the remaining list in the order toposort recurses on
// (visited ++ rest).
func listDfs[T any](list []T, before func(a, b T) bool) (T, []T, error) {
	us := list[0]
	var visited []T
	rest := append([]T(nil), list[1:]...)
	for {
		for _, v := range visited {
			if before(v, us) {
				var zero T
				return zero, nil, fmt.Errorf("dependency cycle")
			}
		}
		var right, wrong []T
		for _, x := range rest {
			if before(x, us) {
				right = append(right, x)
			} else {
				wrong = append(wrong, x)
			}
		}
		if len(right) == 0 {
			return us, append(visited, rest...), nil
		}
		visited = append([]T{us}, visited...)
		us = right[0]
		rest = append(right[1:], wrong...)
	}
}

// createOrder is disko's sortDevicesByDependencies: [kind, key] pairs of
// every device in attribute order, toposorted so that the devices an md
// array or VG is built from come first.
func createOrder(d *disko.Devices) ([][2]string, error) {
	var list [][2]string
	for _, k := range sortedKeys(d.Disk) {
		list = append(list, [2]string{"disk", k})
	}
	for _, k := range sortedKeys(d.LVMVG) {
		list = append(list, [2]string{"lvm_vg", k})
	}
	for _, k := range sortedKeys(d.Mdadm) {
		list = append(list, [2]string{"mdadm", k})
	}
	for _, k := range sortedKeys(d.Nodev) {
		list = append(list, [2]string{"nodev", k})
	}
	deps := deviceDependencies(d)
	order, err := toposort(list, func(a, b [2]string) bool {
		for _, x := range deps[b] {
			if x == a {
				return true
			}
		}
		return false
	})
	if err != nil {
		return nil, fmt.Errorf("devices: %w between md arrays and volume groups", err)
	}
	return order, nil
}

// deviceDependencies is disko's _meta.deviceDependencies: for [kind, name]
// of an md array or VG, the [kind, name] of the devices its members are on.
// Like disko, keys and values use the name option, list items the key.
func deviceDependencies(d *disko.Devices) map[[2]string][][2]string {
	deps := map[[2]string][][2]string{}
	var walk func(c *disko.Content, owner [2]string)
	walk = func(c *disko.Content, owner [2]string) {
		if c == nil {
			return
		}
		switch c.Type {
		case "mdraid":
			k := [2]string{"mdadm", c.Name}
			deps[k] = append(deps[k], owner)
		case "lvm_pv":
			k := [2]string{"lvm_vg", c.VG}
			deps[k] = append(deps[k], owner)
		}
		for _, p := range c.GPTPartitions {
			walk(p.Content, owner)
		}
		for _, p := range c.TablePartitions {
			walk(p.Content, owner)
		}
		walk(c.Content, owner)
	}
	for _, disk := range d.Disk {
		walk(disk.Content, [2]string{"disk", disk.Name})
	}
	for _, md := range d.Mdadm {
		walk(md.Content, [2]string{"mdadm", md.Name})
	}
	for _, vg := range d.LVMVG {
		for _, lv := range vg.LVs {
			walk(lv.Content, [2]string{"lvm_vg", vg.Name})
		}
	}
	return deps
}

// fsEntry is one NixOS fileSystems entry.
type fsEntry struct {
	mountpoint, device, fsType string
	options                    []string
	argv                       []string
}

// mounts collects the fileSystems disko hands to NixOS, and orders them
// with toposort(fsBefore) over the mountpoints in attribute order.
func (b *builder) mounts() error {
	entries := map[string]*fsEntry{}
	b.collectMounts(entries)
	var list []*fsEntry
	for _, k := range sortedKeys(entries) {
		list = append(list, entries[k])
	}
	sorted, err := toposort(list, fsBefore)
	if err != nil {
		return fmt.Errorf("mountpoints: %w", err)
	}
	b.p.MountOrder = []string{}
	b.p.Mounts = []*MountPlan{}
	for _, e := range sorted {
		b.p.MountOrder = append(b.p.MountOrder, e.mountpoint)
		b.p.Mounts = append(b.p.Mounts, &MountPlan{Mountpoint: e.mountpoint, Device: e.device, FSType: e.fsType, Options: e.options, Argv: e.argv})
	}
	return nil
}

func normalisePath(p string) string {
	if strings.HasSuffix(p, "/") {
		return p
	}
	return p + "/"
}

// fsBefore is nixpkgs' utils.fsBefore (without depends).
func fsBefore(a, b *fsEntry) bool {
	am := normalisePath(a.mountpoint)
	return strings.HasPrefix(normalisePath(b.device), am) || strings.HasPrefix(normalisePath(b.mountpoint), am)
}

func (b *builder) collectMounts(entries map[string]*fsEntry) {
	root := b.opt.Root
	var walk func(c *disko.Content)
	walk = func(c *disko.Content) {
		if c == nil {
			return
		}
		switch c.Type {
		case "filesystem":
			if c.Mountpoint != nil {
				mp := *c.Mountpoint
				argv := append([]string{"mount", c.Device, root + mp, "-t", c.Format}, optArgs(c.MountOptions)...)
				entries[mp] = &fsEntry{mp, c.Device, c.Format, c.MountOptions, append(argv, "-o", "X-mount.mkdir")}
			}
		case "btrfs":
			btrfsMounts(c, root, entries)
		}
		for _, p := range c.GPTPartitions {
			walk(p.Content)
		}
		for _, p := range c.TablePartitions {
			walk(p.Content)
		}
		walk(c.Content)
	}
	for _, k := range sortedKeys(b.d.Disk) {
		walk(b.d.Disk[k].Content)
	}
	for _, k := range sortedKeys(b.d.Mdadm) {
		walk(b.d.Mdadm[k].Content)
	}
	for _, k := range sortedKeys(b.d.LVMVG) {
		for _, lk := range sortedKeys(b.d.LVMVG[k].LVs) {
			walk(b.d.LVMVG[k].LVs[lk].Content)
		}
	}
	for _, k := range sortedKeys(b.d.Nodev) {
		n := b.d.Nodev[k]
		if n.Mountpoint.Value == nil {
			continue
		}
		mp := *n.Mountpoint.Value
		dev := n.Device
		for _, o := range n.MountOptions {
			if o == "bind" {
				dev = root + n.Device
			}
		}
		argv := append([]string{"mount", "-t", n.FSType, dev, root + mp}, optArgs(n.MountOptions)...)
		entries[mp] = &fsEntry{mp, n.Device, n.FSType, n.MountOptions, append(argv, "-o", "X-mount.mkdir")}
	}
}

func btrfsMounts(c *disko.Content, root string, entries map[string]*fsEntry) {
	for _, k := range sortedKeys(c.Subvolumes) {
		sv := c.Subvolumes[k]
		if sv.Mountpoint == nil {
			continue
		}
		mp := *sv.Mountpoint
		opts := append(append([]string{}, sv.MountOptions...), "subvol="+sv.Name)
		argv := append([]string{"mount", c.Device, root + mp}, optArgs(opts)...)
		entries[mp] = &fsEntry{mp, c.Device, "btrfs", opts, append(argv, "-o", "X-mount.mkdir")}
	}
	if c.Mountpoint != nil {
		mp := *c.Mountpoint
		argv := append([]string{"mount", c.Device, root + mp}, optArgs(c.MountOptions)...)
		entries[mp] = &fsEntry{mp, c.Device, "btrfs", c.MountOptions, append(argv, "-o", "X-mount.mkdir")}
	}
}

func optArgs(opts []string) []string {
	var a []string
	for _, o := range opts {
		a = append(a, "-o", o)
	}
	return a
}

// stableSortBy sorts s stably by key.
func stableSortBy[T any](s []T, key func(T) int) {
	sort.SliceStable(s, func(i, j int) bool { return key(s[i]) < key(s[j]) })
}

package apply

import (
	"fmt"
	"os"
	"strings"
	"unicode/utf16"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
	"github.com/nixlos/nixlos/disko"
	"github.com/nixlos/nixlos/partition"
)

// writeGPT writes a GPT with exactly the planned partitions (names, type
// GUIDs, attributes, partition GUIDs) and then the protective or hybrid MBR.
func writeGPT(f *os.File, size uint64, parts []*partition.PartPlan, hybrid *partition.HybridMBR) error {
	t := &gpt.Table{LogicalSectorSize: partition.SectorSize, PhysicalSectorSize: partition.SectorSize}
	for _, p := range parts {
		if n := len(utf16.Encode([]rune(p.Label))); n > 36 {
			return fmt.Errorf("partition %d: GPT name %q has %d UTF-16 units, at most 36 fit", p.Number, p.Label, n)
		}
		t.Partitions = append(t.Partitions, &gpt.Partition{Index: p.Number, Start: p.StartSector, End: p.EndSector,
			Type: gpt.Type(strings.ToUpper(p.TypeGUID)), Name: p.Label, GUID: p.UUID, Attributes: p.Attributes})
	}
	if err := t.Write(f, int64(size)); err != nil {
		return fmt.Errorf("write GPT: %w", err)
	}
	slots := []partition.MBRSlot{{Slot: 1, Type: 0xEE, StartSector: 1, Sectors: size/partition.SectorSize - 1}}
	if hybrid != nil {
		slots = hybrid.Slots
	}
	return writeMBREntries(f, size, slots)
}

// writeMBREntries writes the four primary MBR entries and the signature,
// leaving boot code and disk signature alone.
func writeMBREntries(f *os.File, size uint64, slots []partition.MBRSlot) error {
	t := &mbr.Table{LogicalSectorSize: partition.SectorSize, PhysicalSectorSize: partition.SectorSize}
	for i := 1; i <= 4; i++ {
		p := &mbr.Partition{Index: i}
		for _, s := range slots {
			if s.Slot == i {
				p = mbrEntry(i, s.Type, s.Bootable, s.StartSector, s.Sectors)
			}
		}
		t.Partitions = append(t.Partitions, p)
	}
	if err := t.Write(f, int64(size)); err != nil {
		return fmt.Errorf("write MBR: %w", err)
	}
	return f.Sync()
}

// writeMSDOS writes an msdos table of primary partitions.
func writeMSDOS(f *os.File, size uint64, parts []*partition.PartPlan) error {
	var slots []partition.MBRSlot
	for _, p := range parts {
		if p.Logical || p.MBRType == 0x05 || p.Number > 4 {
			return fmt.Errorf("partition %d: extended and logical msdos partitions are %w", p.Number, disko.ErrNotSupported)
		}
		slots = append(slots, partition.MBRSlot{Slot: p.Number, Type: p.MBRType, Bootable: p.Bootable, StartSector: p.StartSector, Sectors: p.EndSector - p.StartSector + 1})
	}
	// a GPT left over from an earlier layout would win over the new MBR
	if err := zeroGPTHeaders(f, size); err != nil {
		return err
	}
	return writeMBREntries(f, size, slots)
}

func zeroGPTHeaders(f *os.File, size uint64) error {
	zero := make([]byte, partition.SectorSize)
	for _, off := range []int64{partition.SectorSize, int64(size) - partition.SectorSize} {
		if _, err := f.WriteAt(zero, off); err != nil {
			return fmt.Errorf("clear old GPT header: %w", err)
		}
	}
	return nil
}

func mbrEntry(i int, typ uint8, boot bool, start, sectors uint64) *mbr.Partition {
	capped := func(v uint64) uint32 {
		if v > 0xFFFFFFFF {
			return 0xFFFFFFFF
		}
		return uint32(v)
	}
	p := &mbr.Partition{Index: i, Bootable: boot, Type: mbr.Type(typ), Start: capped(start), Size: capped(sectors)}
	p.StartHead, p.StartSector, p.StartCylinder = chs(start)
	p.EndHead, p.EndSector, p.EndCylinder = chs(start + sectors - 1)
	return p
}

// chs encodes an LBA as MBR cylinder/head/sector bytes (255 heads, 63
// sectors per track), saturating past cylinder 1023 as sgdisk does.
func chs(lba uint64) (head, sector, cyl byte) {
	c := lba / (255 * 63)
	if c > 1023 {
		return 0xFE, 0xFF, 0xFF
	}
	h := (lba / 63) % 255
	s := lba%63 + 1
	return byte(h), byte(s) | byte((c>>2)&0xC0), byte(c)
}

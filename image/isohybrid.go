package image

import (
	"encoding/binary"
	"fmt"
)

// Hybrid describes the MBR that makes an ISO 9660 image bootable as a disk,
// in the layout `xorriso -isohybrid-mbr … -isohybrid-gpt-basdat` writes for
// MBR: partition 1 (active, type 0x00) spans the whole image from sector 0,
// partition 2 (type 0xEF) is the El Torito EFI boot image, so UEFI firmware
// finds the ESP when the file is written to a USB stick.
type Hybrid struct {
	Code       []byte // isohdpfx.bin: the first 432 bytes of the MBR
	BootLBA    uint32 // El Torito BIOS boot image (isolinux.bin), 2048-byte blocks
	ImageBytes int64  // whole image size in bytes, a multiple of HybridAlign
	ESPLBA     uint32 // El Torito EFI image, 2048-byte blocks
	ESPBytes   int64  // its size in bytes
	DiskID     uint32 // MBR disk signature
}

// HybridAlign is the size multiple of an isohybrid image: one cylinder of
// 64 heads × 32 sectors × 512 bytes, as isohybrid pads.
const HybridAlign = 64 * 32 * 512

// HybridSize rounds an ISO volume size up to HybridAlign.
func HybridSize(volumeBytes int64) int64 {
	return (volumeBytes + HybridAlign - 1) / HybridAlign * HybridAlign
}

// MBR returns the 512-byte isohybrid master boot record.
func (h Hybrid) MBR() ([512]byte, error) {
	var m [512]byte
	if len(h.Code) != 432 {
		return m, fmt.Errorf("isohybrid MBR code is %d bytes, want 432 (isohdpfx.bin)", len(h.Code))
	}
	if h.ImageBytes <= 0 || h.ImageBytes%512 != 0 || h.ImageBytes/512 > 0xffffffff {
		return m, fmt.Errorf("image size %d is not a positive multiple of 512 below 2 TiB", h.ImageBytes)
	}
	espStart, espSectors := int64(h.ESPLBA)*4, (h.ESPBytes+511)/512
	if h.ESPBytes <= 0 || espStart+espSectors > h.ImageBytes/512 {
		return m, fmt.Errorf("ESP (block %d, %d bytes) outside the image", h.ESPLBA, h.ESPBytes)
	}
	copy(m[:432], h.Code)
	// isohdpfx.bin reads the boot image's 512-byte LBA from offset 432.
	binary.LittleEndian.PutUint32(m[432:], h.BootLBA*4)
	binary.LittleEndian.PutUint32(m[440:], h.DiskID)
	putMBRPart(m[446:462], 0x80, 0x00, 0, uint32(h.ImageBytes/512))
	putMBRPart(m[462:478], 0x00, 0xef, uint32(espStart), uint32(espSectors))
	m[510], m[511] = 0x55, 0xaa
	return m, nil
}

// putMBRPart writes one 16-byte MBR partition entry.
func putMBRPart(e []byte, status, typ byte, start, sectors uint32) {
	e[0] = status
	copy(e[1:4], chs(start))
	e[4] = typ
	copy(e[5:8], chs(start+sectors-1))
	binary.LittleEndian.PutUint32(e[8:], start)
	binary.LittleEndian.PutUint32(e[12:], sectors)
}

// chs encodes lba as cylinder/head/sector for 64 heads × 32 sectors, or the
// "beyond 1024 cylinders" marker.
func chs(lba uint32) []byte {
	c, h, s := lba/(64*32), (lba/32)%64, lba%32+1
	if c > 1023 {
		return []byte{0xfe, 0xff, 0xff}
	}
	return []byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

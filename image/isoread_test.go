package image

import "testing"

// FuzzISORead feeds arbitrary volume descriptors and directories (placed at
// sector 16, after the system area) to the ISO readers Inspect uses.
func FuzzISORead(f *testing.F) {
	seed := make([]byte, 3*isoBlock) // PVD, terminator, root directory
	copy(seed[1:], "CD001")
	copy(seed[isoBlock+1:], "CD001")
	seed[0], seed[isoBlock] = 1, 255
	seed[158], seed[166] = 18, 0x08
	seed[2*isoBlock] = 34
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		r := byteReaderAt(append(make([]byte, pvdSector*isoBlock), b...))
		v, err := readVolume(r)
		if err != nil {
			return
		}
		isoLookup(r, v.Root, "nixlos/vmlinuz")
		if v.Catalog != nil {
			parseCatalog(v.Catalog)
		}
	})
}

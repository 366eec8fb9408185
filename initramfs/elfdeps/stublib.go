package elfdeps

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
)

// Data-only libraries replaced by stubs in the image. ICU's libicudata
// (31 MiB on Debian 12, a third of the tools segment) is pulled in by nix
// through libarchive → libxml2 → libicuuc, yet nothing the installer runs
// converts text with ICU: libxml2 reaches it only for encodings it lacks
// built in, and nix never parses XML. Unpacking those bytes cost ~0.6 s of
// every TCG boot. The stub keeps the library's SONAME and its exported data
// symbols (so the dynamic loader is satisfied) with a zeroed, tiny object:
// should ICU ever open its data it finds no valid header and returns
// U_INVALID_FORMAT_ERROR instead of data.
var stubLibPattern = regexp.MustCompile(`^libicudata\.so(\.\d+)*$`)

// IsStubLib reports whether the library at path p is one to replace by
// its stub (StubLibrary) in an image.
func IsStubLib(p string) bool { return stubLibPattern.MatchString(filepath.Base(p)) }

// stubDataSize is the size of each stub data symbol.
const stubDataSize = 64

// StubLibrary returns a minimal x86-64 ELF shared object with the SONAME
// and the defined dynamic symbols of the shared object at path, each symbol
// a zeroed object of stubDataSize bytes. Functions are refused: a stub
// cannot run code.
func StubLibrary(path string) ([]byte, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("stub %s: not an x86-64 ELF64 object", path)
	}
	sonames, err := f.DynString(elf.DT_SONAME)
	if err != nil || len(sonames) != 1 {
		return nil, fmt.Errorf("stub %s: no SONAME", path)
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		return nil, fmt.Errorf("stub %s: %w", path, err)
	}
	var names []string
	for _, s := range syms {
		if s.Section == elf.SHN_UNDEF || elf.ST_BIND(s.Info) == elf.STB_LOCAL {
			continue
		}
		switch elf.ST_TYPE(s.Info) {
		case elf.STT_OBJECT:
			names = append(names, s.Name)
		case elf.STT_FUNC, elf.STT_GNU_IFUNC:
			return nil, fmt.Errorf("stub %s: exports function %s, not only data", path, s.Name)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("stub %s: exports no data symbols", path)
	}
	return stubELF(sonames[0], names), nil
}

// stubELF lays out the shared object: ELF header, program headers, then
// .hash, .dynsym, .dynstr, .rodata (the zeroed objects), .dynamic,
// .shstrtab and the section headers, all in one loadable segment.
func stubELF(soname string, symbols []string) []byte {
	symbols = append([]string(nil), symbols...)
	sort.Strings(symbols)
	le := binary.LittleEndian
	const (
		ehSize = 64
		phSize = 56
		shSize = 64
		nPhdr  = 3 // LOAD, DYNAMIC, GNU_STACK
	)
	align := func(n, a int) int { return (n + a - 1) / a * a }

	// .dynstr
	var dynstr bytes.Buffer
	dynstr.WriteByte(0)
	strOff := func(s string) uint32 {
		o := uint32(dynstr.Len())
		dynstr.WriteString(s)
		dynstr.WriteByte(0)
		return o
	}
	sonameOff := strOff(soname)
	nameOffs := make([]uint32, len(symbols))
	for i, s := range symbols {
		nameOffs[i] = strOff(s)
	}
	nsym := len(symbols) + 1

	// Offsets (file offset = virtual address).
	hashOff := align(ehSize+nPhdr*phSize, 8)
	hashLen := 4 * (2 + 1 + nsym) // nbucket=1, nchain=nsym
	symOff := align(hashOff+hashLen, 8)
	symLen := 24 * nsym
	strOffset := symOff + symLen
	dataOff := align(strOffset+dynstr.Len(), 16)
	dataLen := stubDataSize * len(symbols)
	dynOff := align(dataOff+dataLen, 8)
	dyn := [][2]uint64{
		{uint64(elf.DT_SONAME), uint64(sonameOff)},
		{uint64(elf.DT_HASH), uint64(hashOff)},
		{uint64(elf.DT_SYMTAB), uint64(symOff)},
		{uint64(elf.DT_STRTAB), uint64(strOffset)},
		{uint64(elf.DT_STRSZ), uint64(dynstr.Len())},
		{uint64(elf.DT_SYMENT), 24},
		{uint64(elf.DT_NULL), 0},
	}
	dynLen := 16 * len(dyn)
	loadEnd := dynOff + dynLen
	shstr := []byte("\x00.hash\x00.dynsym\x00.dynstr\x00.rodata\x00.dynamic\x00.shstrtab\x00")
	shstrOff := loadEnd
	shOff := align(shstrOff+len(shstr), 8)
	const nShdr = 7
	out := make([]byte, shOff+nShdr*shSize)

	// ELF header.
	copy(out, []byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT), byte(elf.ELFOSABI_NONE)})
	le.PutUint16(out[16:], uint16(elf.ET_DYN))
	le.PutUint16(out[18:], uint16(elf.EM_X86_64))
	le.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(out[24:], 0) // entry
	le.PutUint64(out[32:], ehSize)
	le.PutUint64(out[40:], uint64(shOff))
	le.PutUint16(out[52:], ehSize)
	le.PutUint16(out[54:], phSize)
	le.PutUint16(out[56:], nPhdr)
	le.PutUint16(out[58:], shSize)
	le.PutUint16(out[60:], nShdr)
	le.PutUint16(out[62:], nShdr-1) // .shstrtab

	phdr := func(i int, typ elf.ProgType, flags elf.ProgFlag, off, size, alignment int) {
		p := out[ehSize+i*phSize:]
		le.PutUint32(p[0:], uint32(typ))
		le.PutUint32(p[4:], uint32(flags))
		le.PutUint64(p[8:], uint64(off))
		le.PutUint64(p[16:], uint64(off))
		le.PutUint64(p[24:], uint64(off))
		le.PutUint64(p[32:], uint64(size))
		le.PutUint64(p[40:], uint64(size))
		le.PutUint64(p[48:], uint64(alignment))
	}
	// One read-write segment: the loader may write into .dynamic.
	phdr(0, elf.PT_LOAD, elf.PF_R|elf.PF_W, 0, loadEnd, 0x1000)
	phdr(1, elf.PT_DYNAMIC, elf.PF_R|elf.PF_W, dynOff, dynLen, 8)
	phdr(2, elf.PT_GNU_STACK, elf.PF_R|elf.PF_W, 0, 0, 16)

	// .hash: one bucket holding the last symbol, each chained to the one before.
	h := out[hashOff:]
	le.PutUint32(h[0:], 1)
	le.PutUint32(h[4:], uint32(nsym))
	le.PutUint32(h[8:], uint32(nsym-1))
	for i := 1; i < nsym; i++ {
		le.PutUint32(h[12+4*i:], uint32(i-1))
	}
	// .dynsym (entry 0 stays zero).
	for i := range symbols {
		s := out[symOff+24*(i+1):]
		le.PutUint32(s[0:], nameOffs[i])
		s[4] = byte(elf.ST_INFO(elf.STB_GLOBAL, elf.STT_OBJECT))
		le.PutUint16(s[6:], 4) // section index of .rodata
		le.PutUint64(s[8:], uint64(dataOff+i*stubDataSize))
		le.PutUint64(s[16:], stubDataSize)
	}
	copy(out[strOffset:], dynstr.Bytes())
	for i, d := range dyn {
		le.PutUint64(out[dynOff+16*i:], d[0])
		le.PutUint64(out[dynOff+16*i+8:], d[1])
	}
	copy(out[shstrOff:], shstr)

	// Section headers: null, .hash, .dynsym, .dynstr, .rodata, .dynamic, .shstrtab.
	shdr := func(i int, name uint32, typ elf.SectionType, flags elf.SectionFlag, off, size int, link, info uint32, alignment, entsize int) {
		s := out[shOff+i*shSize:]
		le.PutUint32(s[0:], name)
		le.PutUint32(s[4:], uint32(typ))
		le.PutUint64(s[8:], uint64(flags))
		if flags&elf.SHF_ALLOC != 0 {
			le.PutUint64(s[16:], uint64(off))
		}
		le.PutUint64(s[24:], uint64(off))
		le.PutUint64(s[32:], uint64(size))
		le.PutUint32(s[40:], link)
		le.PutUint32(s[44:], info)
		le.PutUint64(s[48:], uint64(alignment))
		le.PutUint64(s[56:], uint64(entsize))
	}
	name := func(s string) uint32 { return uint32(bytes.Index(shstr, []byte("\x00"+s+"\x00")) + 1) }
	shdr(1, name(".hash"), elf.SHT_HASH, elf.SHF_ALLOC, hashOff, hashLen, 2, 0, 8, 4)
	shdr(2, name(".dynsym"), elf.SHT_DYNSYM, elf.SHF_ALLOC, symOff, symLen, 3, 1, 8, 24)
	shdr(3, name(".dynstr"), elf.SHT_STRTAB, elf.SHF_ALLOC, strOffset, dynstr.Len(), 0, 0, 1, 0)
	shdr(4, name(".rodata"), elf.SHT_PROGBITS, elf.SHF_ALLOC, dataOff, dataLen, 0, 0, 16, 0)
	shdr(5, name(".dynamic"), elf.SHT_DYNAMIC, elf.SHF_ALLOC|elf.SHF_WRITE, dynOff, dynLen, 3, 0, 8, 16)
	shdr(6, name(".shstrtab"), elf.SHT_STRTAB, 0, shstrOff, len(shstr), 0, 0, 1, 0)
	return out
}

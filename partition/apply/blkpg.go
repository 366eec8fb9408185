package apply

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/nixlos/nixlos/partition"
	"golang.org/x/sys/unix"
)

// syncKernelPartitions makes the kernel's partitions of the open disk f
// exactly the planned ones. It asks the kernel to re-read the table
// (BLKRRPART) and then deletes and adds partitions with BLKPG where the
// kernel's view differs, which also works on kernels without partition
// table parsers and without udev.
func syncKernelPartitions(f *os.File, parts []*partition.PartPlan) error {
	if err := rereadPartitions(f); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	name, err := fdSysName(f)
	if err != nil {
		return err
	}
	want := map[int]*partition.PartPlan{}
	for _, p := range parts {
		want[p.Number] = p
	}
	have, err := kernelPartitions(name)
	if err != nil {
		return err
	}
	for n, ext := range have {
		if p, ok := want[n]; ok && ext.first == p.StartSector && ext.last == p.EndSector {
			delete(want, n)
			continue
		}
		if err := blkpg(f, unix.BLKPG_DEL_PARTITION, n, 0, 0); err != nil {
			return fmt.Errorf("remove old partition %d of %s from the kernel: %w", n, f.Name(), err)
		}
	}
	for n, p := range want {
		if err := blkpg(f, unix.BLKPG_ADD_PARTITION, n, p.StartSector, p.EndSector-p.StartSector+1); err != nil {
			return fmt.Errorf("add partition %d of %s to the kernel: %w", n, f.Name(), err)
		}
	}
	return nil
}

func blkpg(f *os.File, op, pno int, start, sectors uint64) error {
	part := unix.BlkpgPartition{Start: int64(start * partition.SectorSize), Length: int64(sectors * partition.SectorSize), Pno: int32(pno)}
	arg := unix.BlkpgIoctlArg{Op: int32(op), Datalen: int32(unsafe.Sizeof(part)), Data: (*byte)(unsafe.Pointer(&part))}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg)))
	if errno != 0 {
		return errno
	}
	return nil
}

func fdSysName(f *os.File) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", err
	}
	return sysName(st.Rdev)
}

// extent is a partition's first and last sector.
type extent struct{ first, last uint64 }

// kernelPartitions reads a disk's partitions (number → sectors) from sysfs.
func kernelPartitions(disk string) (map[int]extent, error) {
	nodes, err := partitionsOf(disk)
	if err != nil {
		return nil, err
	}
	out := map[int]extent{}
	for _, n := range nodes {
		dir := filepath.Join(SysRoot, "class/block", n.name)
		num, err1 := readUint(filepath.Join(dir, "partition"))
		start, err2 := readUint(filepath.Join(dir, "start"))
		size, err3 := readUint(filepath.Join(dir, "size"))
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("partition %s: %w", n.name, err)
		}
		out[int(num)] = extent{start, start + size - 1}
	}
	return out, nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

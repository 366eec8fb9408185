package partition

// Op is what a plan step does; the executor (Session.step) has one case per Op.
type Op string

// The operations of a plan, in the plan JSON as "op".
const (
	OpWipe            Op = "wipe"             // wipe a whole disk's signatures and table
	OpTable           Op = "table"            // write the partition table (with its partitions)
	OpZap             Op = "zap"              // wipe a device's signatures
	OpPartition       Op = "partition"        // a partition (written with its table)
	OpPartitionFlag   Op = "partition-flag"   // a partition flag (written with the table)
	OpHybridMBR       Op = "hybrid-mbr"       // a hybrid MBR (written with the table)
	OpHybridType      Op = "hybrid-type"      // a hybrid MBR entry's type
	OpHybridActive    Op = "hybrid-active"    // the hybrid MBR's active entry
	OpLUKSFormat      Op = "luksFormat"       // cryptsetup luksFormat
	OpLUKSOpen        Op = "luksOpen"         // cryptsetup open
	OpLUKSAddKey      Op = "luksAddKey"       // cryptsetup luksAddKey
	OpMdadm           Op = "mdadm"            // mdadm --create
	OpMdadmAssemble   Op = "mdadm-assemble"   // mdadm --assemble (a kept array)
	OpPVCreate        Op = "pvcreate"         // pvcreate
	OpVGCreate        Op = "vgcreate"         // vgcreate
	OpVGActivate      Op = "vg-activate"      // vgchange -a y (a kept volume group)
	OpLVCreate        Op = "lvcreate"         // lvcreate
	OpLVRemove        Op = "lvremove"         // lvremove (an LV of a kept group that is not kept)
	OpMkfs            Op = "mkfs"             // mkfs.*
	OpMkswap          Op = "mkswap"           // mkswap
	OpMountTemp       Op = "mount-temp"       // mount a btrfs filesystem to make subvolumes
	OpUmountTemp      Op = "umount-temp"      // unmount it again
	OpSubvolume       Op = "subvolume"        // btrfs subvolume create
	OpSubvolumeDelete Op = "subvolume-delete" // btrfs subvolume delete (of a kept filesystem)
	OpSwapfile        Op = "swapfile"         // a swap file in a subvolume
	OpModprobe        Op = "modprobe"         // load a kernel module (failure is not fatal)
	OpWipePart        Op = "wipe-part"        // wipe a partition that is not kept
)

// Package imagepath names the files nixlos puts into the installer image
// (the initramfs every medium boots: ISO, USB image, PXE bundle, the
// deploy kexec) that both sides read: mkiso writes them (package
// initramfs, and deploy's key archive), the installer and image.Inspect
// read them. It is a leaf: constants only, no imports, so the installer
// can name these paths without linking the image builder.
//
// Paths are relative to the image's root, as cpio archives name entries;
// the running installer opens "/" + path.
package imagepath

const (
	// Dir holds everything nixlos adds to the image.
	Dir = "etc/nixlos"
	// Flake is the directory of the embedded flake (flake.EmbeddedDir).
	Flake = Dir + "/flake"
	// Manifest is the install manifest (JSON, flake.Manifest).
	Manifest = Dir + "/manifest.json"
	// AgeKey is the embedded age identity, mode 0600, only when the media
	// were built with one.
	AgeKey = Dir + "/age.key"
	// BootModules lists, one per line, the kernel modules the installer
	// loads right after its ready line.
	BootModules = Dir + "/boot-modules"
)

package initramfs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPruneCache(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	var names []string
	for i := 0; i < 7; i++ {
		n := filepath.Join(dir, fmt.Sprintf("tools-%d.cpio.zstd", i))
		os.WriteFile(n, nil, 0o644)
		os.WriteFile(n+".json", nil, 0o644)
		ts := old.Add(time.Duration(i) * time.Minute) // tools-6 newest
		os.Chtimes(n, ts, ts)
		names = append(names, n)
	}
	os.WriteFile(filepath.Join(dir, "modules-a.cpio.zstd"), nil, 0o644)
	cache{dir}.prune([]string{names[0]}, 3) // tools-0 is in use: kept and marked newest
	for i, n := range names {
		_, err := os.Stat(n)
		_, errj := os.Stat(n + ".json")
		keep := i == 0 || i >= 5 // in use + the two newest others
		if (err == nil) != keep || (errj == nil) != keep {
			t.Errorf("%s: present=%v json=%v, want %v", filepath.Base(n), err == nil, errj == nil, keep)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "modules-a.cpio.zstd")); err != nil {
		t.Error("other kinds pruned")
	}
}

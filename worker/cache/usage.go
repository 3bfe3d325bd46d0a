package cache

import (
	"context"
	"io/fs"
	"path/filepath"
	"syscall"
)

// diskUsage is the space the files below dir take on disk (allocated
// blocks, as du counts them; the apparent size where the file system does
// not say). Unreadable entries count as nothing.
func diskUsage(ctx context.Context, dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	return total
}

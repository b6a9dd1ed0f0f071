package procfs

// Bits of a /proc/PID/pagemap entry (Documentation/admin-guide/mm/pagemap.rst).
const (
	PagePresent          = 1 << 63
	PageSwapped          = 1 << 62
	PageFileOrSharedAnon = 1 << 61
)

package dump

import (
	"testing"

	"github.com/ckpt/ckpt/go/procfs"
)

func TestNoFaultWriterMaps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		suspect bool
	}{
		{"", false},
		{"[heap]", false},
		{"/usr/lib/x86_64-linux-gnu/libc.so.6", false},
		{"/dev/zero (deleted)", false},
		{"/dev/shm/segment", false},
		{"/[aio] (deleted)", true},
		{"anon_inode:[io_uring]", true},
		{"/dev/dri/renderD128", true},
		{"/dev/infiniband/uverbs0", true},
	} {
		got := noFaultWriter("/nonexistent", []procfs.Mapping{{Start: 0x1000, End: 0x2000, Name: tc.name}}, nil)
		if (got != "") != tc.suspect {
			t.Errorf("a mapping named %q: %q, want suspect %v", tc.name, got, tc.suspect)
		}
	}
}

package procfs

import (
	"fmt"
	"testing"
)

func TestParseMaps(t *testing.T) {
	for _, test := range []struct {
		desc string
		line string
		want Mapping
	}{
		{
			desc: "file",
			line: "55d4c6a00000-55d4c6a02000 r-xp 00002000 fe:00 9989198                    /usr/bin/cat",
			want: Mapping{Start: 0x55d4c6a00000, End: 0x55d4c6a02000, Read: true, Exec: true,
				Offset: 0x2000, Major: 0xfe, Inode: 9989198, Name: "/usr/bin/cat"},
		},
		{
			desc: "anonymous",
			line: "7f0000000000-7f0000021000 rw-p 00000000 00:00 0 ",
			want: Mapping{Start: 0x7f0000000000, End: 0x7f0000021000, Read: true, Write: true},
		},
		{
			desc: "no trailing space",
			line: "7f0000000000-7f0000021000 ---p 00000000 00:00 0",
			want: Mapping{Start: 0x7f0000000000, End: 0x7f0000021000},
		},
		{
			desc: "shared with spaces and deleted",
			line: "7f1000000000-7f1000001000 rw-s 00000000 00:01 1234                       /dev/shm/a b (deleted)",
			want: Mapping{Start: 0x7f1000000000, End: 0x7f1000001000, Read: true, Write: true, Shared: true,
				Minor: 1, Inode: 1234, Name: "/dev/shm/a b (deleted)"},
		},
		{
			desc: "vsyscall",
			line: "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
			want: Mapping{Start: 0xffffffffff600000, End: 0xffffffffff601000, Exec: true, Name: "[vsyscall]"},
		},
	} {
		t.Run(test.desc, func(t *testing.T) {
			got, err := ParseMaps([]byte(test.line + "\n"))
			if err != nil {
				t.Fatalf("ParseMaps(%q): %v", test.line, err)
			}
			if len(got) != 1 || got[0] != test.want {
				t.Errorf("ParseMaps(%q): got %+v, wanted %+v", test.line, got, test.want)
			}
		})
	}
}

func TestParseMapsRejects(t *testing.T) {
	for _, line := range []string{
		"",
		"garbage",
		"7f00-7e00 rw-p 00000000 00:00 0",
		"7f00-7f01 rw 00000000 00:00 0",
		"7f00-7f01 rw-p 00000000 0000 0",
		"7f00-zz rw-p 00000000 00:00 0",
		"7f00-7f01 rw-p 00000000 00:00 12x",
		"1ffffffffffffffff-2ffffffffffffffff rw-p 0 00:00 0",
	} {
		if _, err := ParseMaps([]byte(line + "\n")); err == nil {
			t.Errorf("ParseMaps(%q): got no error", line)
		}
	}
}

// TestParseMapsSelf parses this process's own maps, a real kernel's output.
func TestParseMapsSelf(t *testing.T) {
	b, err := ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := ParseMaps(b)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range ms {
		seen[m.Name] = true
	}
	for _, name := range []string{"[stack]", "[vdso]"} {
		if !seen[name] {
			t.Errorf("no %s in /proc/self/maps", name)
		}
	}
}

func TestParseStatMM(t *testing.T) {
	fields := make([]string, 53)
	for i := range fields {
		fields[i] = fmt.Sprint(i)
	}
	line := "1234 (a (weird) name) S"
	for i := 4; i <= 52; i++ {
		line += " " + fields[i]
	}
	m, err := ParseStatMM([]byte(line + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := MMLayout{StartCode: 26, EndCode: 27, StartStack: 28, StartData: 45, EndData: 46,
		StartBrk: 47, ArgStart: 48, ArgEnd: 49, EnvStart: 50, EnvEnd: 51}
	if m != want {
		t.Errorf("ParseStatMM: got %+v, wanted %+v", m, want)
	}
	if _, err := ParseStatMM([]byte("1 (x) S 1 2 3")); err == nil {
		t.Error("ParseStatMM of a short line: got no error")
	}
}

func FuzzParseMaps(f *testing.F) {
	if b, err := ReadFile("/proc/self/maps"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := ParseMaps(b)
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.Start >= m.End {
				t.Fatalf("accepted an empty range %#x-%#x", m.Start, m.End)
			}
		}
	})
}

func FuzzParseStatMM(f *testing.F) {
	if b, err := ReadFile("/proc/self/stat"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { ParseStatMM(b) })
}

func TestParseFDInfo(t *testing.T) {
	in := "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\n" +
		"tfd:        7 events:       19 data:     7f0a12345678  pos:0 ino:419 sdev:f\n" +
		"tfd:       12 events: 80000019 data:                5  pos:0 ino:41a sdev:f\n" +
		"eventfd-count:               2a\n"
	got, err := ParseFDInfo([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []EpollEntry{{7, 0x19, 0x7f0a12345678}, {12, 0x80000019, 5}}
	if len(got.Epoll) != 2 || got.Epoll[0] != want[0] || got.Epoll[1] != want[1] || got.EventfdCount != 0x2a {
		t.Errorf("ParseFDInfo: got %+v, wanted %+v and count 0x2a", got, want)
	}
	if _, err := ParseFDInfo([]byte("tfd: x events: 1 data: 2\n")); err == nil {
		t.Error("ParseFDInfo of a bad tfd: got no error")
	}
}

func FuzzParseFDInfo(f *testing.F) {
	f.Add([]byte("tfd:        7 events:       19 data:     7f0a12345678  pos:0 ino:419 sdev:f\n"))
	f.Fuzz(func(t *testing.T, b []byte) { ParseFDInfo(b) })
}

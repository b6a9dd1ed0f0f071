package image

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzImageReader feeds arbitrary bytes to the reader.  It must never panic
// or allocate without bound; whatever it accepts must re-encode to metadata
// that decodes to the same thing.  Seeds: the sample image and every file in
// testdata/ (real images cut down by tests/).
func FuzzImageReader(f *testing.F) {
	_, b := sample(f)
	f.Add(b)
	_, b = sampleStored(f, true)
	f.Add(b)
	seeds, _ := filepath.Glob("testdata/*.ckpt")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, outlineErr := ReadOutline(bytes.NewReader(b), int64(len(b)))
		im, h, err := Read(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if outlineErr != nil {
			t.Fatalf("ReadOutline refused what Read accepts: %v", outlineErr)
		}
		_ = VerifyData(bytes.NewReader(b), im, nil)
		again, err := DecodeMeta(EncodeMeta(im))
		if err != nil {
			t.Fatalf("re-decoding accepted metadata: %v", err)
		}
		if err := again.Validate(h.MetaOff); err != nil {
			t.Fatalf("re-validating accepted metadata: %v", err)
		}
	})
}

// FuzzDecodeMeta goes straight at the metadata decoder, past the checksums,
// also skipping runs as ReadOutline does.
func FuzzDecodeMeta(f *testing.F) {
	im, _ := sample(f)
	f.Add(EncodeMeta(im))
	im, _ = sampleStored(f, true)
	f.Add(EncodeMeta(im))
	f.Fuzz(func(t *testing.T, b []byte) {
		outline := &decoder{b: b, total: len(b), version: FormatVersion, skipRuns: true}
		_, outlineErr := outline.meta()
		im, err := DecodeMeta(b)
		if err != nil {
			return
		}
		if outlineErr != nil {
			t.Fatalf("skipping runs, the decoder refused what it accepts otherwise: %v", outlineErr)
		}
		if !bytes.Equal(EncodeMeta(im), b) {
			t.Fatalf("metadata does not re-encode to the same bytes")
		}
		_ = im.Validate(1 << 40)
	})
}

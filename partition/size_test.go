package partition

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"8G", 8 << 30, true}, {"8GiB", 8 << 30, true}, {"500M", 500 << 20, true}, {"1000K", 1000 << 10, true},
		{"4096", 4096, true}, {"2s", 1024, true}, {"1T", 1 << 40, true}, {"", 0, false}, {"G", 0, false},
		{"8X", 0, false}, {"99999999999999P", 0, false}, {"-1G", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

package pipeline

import (
	"strings"
	"testing"

	"github.com/nixlos/nixlos/image"
)

// TestStepsPlan: the build is a list of steps that carry their functions;
// closure is in it only with --closure.
func TestStepsPlan(t *testing.T) {
	for _, tc := range []struct {
		closure bool
		want    string
	}{
		{false, "prepare inputs initramfs images checksums"},
		{true, "prepare closure inputs initramfs images checksums"},
	} {
		p := &Profile{Closure: tc.closure, Formats: []image.Format{image.FormatISO, image.FormatPXE}}
		l := p.Steps()
		if got := strings.Join(l.Names(), " "); got != tc.want {
			t.Errorf("closure=%v: steps %q, want %q", tc.closure, got, tc.want)
		}
		for _, s := range l {
			if s.Run == nil || s.Detail == "" {
				t.Errorf("step %s has no function or detail", s.Name)
			}
		}
		if s, _ := l.Find(StepImages); !strings.Contains(s.Detail, "iso") || !strings.Contains(s.Detail, "pxe") {
			t.Errorf("images detail %q does not name the formats", s.Detail)
		}
	}
}

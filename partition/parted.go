package partition

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// partedSim places partitions the way GNU parted 3.5/3.6 does for disko's
// `parted -s DEV -- mkpart NAME START END` (legacy `table` type): locations
// in the given unit (default MB, decimal) with parted's ±half-unit range,
// snapped to neighbouring partitions and to 1 MiB alignment when possible.
type partedSim struct {
	length                  uint64 // device length in sectors
	firstUsable, lastUsable uint64
	parts                   []extent
}

func newPartedSim(totalSectors uint64, format string) (*partedSim, error) {
	p := &partedSim{length: totalSectors, firstUsable: 1, lastUsable: totalSectors - 1}
	if format == "gpt" {
		p.firstUsable, p.lastUsable = 2+gptEntrySectors, totalSectors-2-gptEntrySectors
	}
	if totalSectors < 4096 {
		return nil, fmt.Errorf("%d sectors is too small for a partition table", totalSectors)
	}
	return p, nil
}

// location is a parsed parted position: the sector and its allowed range.
type location struct {
	sector, lo, hi int64
	iec            bool // binary unit (MiB, …): exact, and an end means "before"
}

// parseLocation is parted's ped_unit_parse_custom with the MB default unit.
func (p *partedSim) parseLocation(s string) (location, error) {
	str := strings.TrimSpace(s)
	i := len(str)
	for i > 0 && !(str[i-1] >= '0' && str[i-1] <= '9' || str[i-1] == '.') {
		i--
	}
	numStr, suffix := str[:i], str[i:]
	num, err := strconv.ParseFloat(numStr, 64)
	if err != nil || numStr == "" {
		return location{}, fmt.Errorf("location %q: not a number with a parted unit", s)
	}
	unitSize, iec, err := p.unitSize(suffix)
	if err != nil {
		return location{}, fmt.Errorf("location %q: %w", s, err)
	}
	radius := int64(math.Ceil(unitSize/SectorSize))/2 - 1
	if radius < 0 || iec || isPow2(unitSize) {
		radius = 0
	}
	sector := int64(num * unitSize / SectorSize)
	if strings.HasPrefix(numStr, "-") {
		sector += int64(p.length)
	}
	l := location{sector: p.clip(sector), lo: p.clip(sector - radius), hi: p.clip(sector + radius), iec: iec}
	return l, nil
}

func isPow2(f float64) bool {
	u := uint64(f)
	return float64(u) == f && u != 0 && u&(u-1) == 0
}

func (p *partedSim) clip(s int64) int64 {
	return min(max(s, 0), int64(p.length)-1)
}

// unitSize is parted's parse_unit_suffix + ped_unit_get_size.
func (p *partedSim) unitSize(suffix string) (size float64, iec bool, err error) {
	l := strings.ToLower(suffix)
	if len(l) > 1 && l[1] == 'i' {
		switch l[0] {
		case 'k':
			return 1 << 10, true, nil
		case 'm':
			return 1 << 20, true, nil
		case 'g':
			return 1 << 30, true, nil
		case 't':
			return 1 << 40, true, nil
		}
	}
	if l == "" {
		return 1e6, false, nil
	}
	switch l[0] {
	case 's':
		return SectorSize, false, nil
	case 'b':
		return 1, false, nil
	case 'k':
		return 1e3, false, nil
	case 'm':
		return 1e6, false, nil
	case 'g':
		return 1e9, false, nil
	case 't':
		return 1e12, false, nil
	case '%':
		return float64(p.length * SectorSize / 100), false, nil
	}
	return 0, false, fmt.Errorf("unknown unit %q (use s, B, kB, MB, GB, TB, KiB, MiB, GiB, TiB or %%)", suffix)
}

// mkpart places a partition from start to end.
func (p *partedSim) mkpart(startStr, endStr string) (extent, error) {
	start, err := p.parseLocation(startStr)
	if err != nil {
		return extent{}, err
	}
	end, err := p.parseLocation(endStr)
	if err != nil {
		return extent{}, err
	}
	if end.iec && start.sector != end.sector { // parted's _adjust_end_if_iec
		end.sector--
		end.lo--
		end.hi--
	}
	s := p.snapStart(start)
	e := p.snapEnd(end)
	if as, ok := p.nearestAligned(s, start.lo, start.hi, 0); ok {
		if ae, ok := p.nearestAligned(e, end.lo, end.hi, defaultAlignment-1); ok && ae > as {
			s, e = as, ae
		}
	}
	if s < int64(p.firstUsable) || e > int64(p.lastUsable) || s > e || !p.free(s, e) {
		return extent{}, fmt.Errorf("%s to %s (sectors %d-%d) does not fit in the free space", startStr, endStr, s, e)
	}
	x := extent{uint64(s), uint64(e)}
	p.parts = append(p.parts, x)
	return x, nil
}

// snapStart moves a start inside a partition or before the usable area to
// the nearest boundary within the allowed range.
func (p *partedSim) snapStart(l location) int64 {
	s := l.sector
	if s < int64(p.firstUsable) && int64(p.firstUsable) <= l.hi {
		s = int64(p.firstUsable)
	}
	for _, x := range p.parts {
		if s >= int64(x.first) && s <= int64(x.last) && int64(x.last)+1 <= l.hi {
			s = int64(x.last) + 1
		}
	}
	return s
}

func (p *partedSim) snapEnd(l location) int64 {
	e := l.sector
	if e > int64(p.lastUsable) && int64(p.lastUsable) >= l.lo {
		e = int64(p.lastUsable)
	}
	for _, x := range p.parts {
		if e >= int64(x.first) && e <= int64(x.last) && int64(x.first)-1 >= l.lo {
			e = int64(x.first) - 1
		}
	}
	return e
}

// nearestAligned finds the sector ≡ offset (mod 2048) nearest to want in
// [lo, hi] that lies in the usable, free area.
func (p *partedSim) nearestAligned(want, lo, hi, offset int64) (int64, bool) {
	lo = max(lo, int64(p.firstUsable))
	hi = min(hi, int64(p.lastUsable))
	const a = defaultAlignment
	down := (want-offset)/a*a + offset
	if want-offset < 0 {
		down = offset - a
	}
	best, found := int64(0), false
	for _, c := range []int64{down, down + a, down - a, down + 2*a} {
		if c < lo || c > hi || !p.free(c, c) {
			continue
		}
		if !found || abs64(c-want) < abs64(best-want) {
			best, found = c, true
		}
	}
	return best, found
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func (p *partedSim) free(s, e int64) bool {
	for _, x := range p.parts {
		if s <= int64(x.last) && e >= int64(x.first) {
			return false
		}
	}
	return true
}

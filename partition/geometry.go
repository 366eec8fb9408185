package partition

import (
	"fmt"
	"strconv"
	"strings"
)

// SectorSize is the logical sector size nixlos plans with.
const SectorSize = 512

// defaultAlignment is sgdisk's and parted's 1 MiB alignment in sectors.
const defaultAlignment = 2048

// gptEntrySectors is the space of the 128-entry GPT partition array.
const gptEntrySectors = 32

// extent is an inclusive range of sectors.
type extent struct{ first, last uint64 }

// sgdiskSim places partitions the way sgdisk 1.0.9/1.0.10 does for disko's
// `sgdisk --align-end [--set-alignment=N] --new=N:START:END` calls.
type sgdiskSim struct {
	firstUsable, lastUsable uint64
	parts                   []extent
}

func newSgdiskSim(totalSectors uint64) (*sgdiskSim, error) {
	if totalSectors < 2*(gptEntrySectors+2)+1 {
		return nil, fmt.Errorf("%d sectors is too small for a GPT", totalSectors)
	}
	return &sgdiskSim{firstUsable: 2 + gptEntrySectors, lastUsable: totalSectors - 2 - gptEntrySectors}, nil
}

func (s *sgdiskSim) isFree(x uint64) bool {
	if x < s.firstUsable || x > s.lastUsable {
		return false
	}
	for _, p := range s.parts {
		if x >= p.first && x <= p.last {
			return false
		}
	}
	return true
}

// rangeFree reports whether every sector in [a, b] is free (true if a > b).
func (s *sgdiskSim) rangeFree(a, b uint64) bool {
	if a > b {
		return true
	}
	if a < s.firstUsable || b > s.lastUsable {
		return false
	}
	for _, p := range s.parts {
		if a <= p.last && b >= p.first {
			return false
		}
	}
	return true
}

func (s *sgdiskSim) findFirstAvailable(start uint64) uint64 {
	first := max(start, s.firstUsable)
	for moved := true; moved; {
		moved = false
		for _, p := range s.parts {
			if first >= p.first && first <= p.last {
				first = p.last + 1
				moved = true
			}
		}
	}
	if first > s.lastUsable {
		return 0
	}
	return first
}

func (s *sgdiskSim) findLastInFree(start uint64, align uint64) uint64 {
	nearest := s.lastUsable
	for _, p := range s.parts {
		if nearest > p.first && p.first > start {
			nearest = p.first - 1
		}
	}
	if align > 1 && (nearest+1)%align != 0 {
		if e := (nearest+1)/align*align - 1; e > start && (nearest+1)/align > 0 {
			nearest = e
		}
	}
	return nearest
}

func (s *sgdiskSim) findFirstInLargest() uint64 {
	var selSize, sel uint64
	for start := uint64(0); ; {
		first := s.findFirstAvailable(start)
		if first == 0 {
			return sel
		}
		last := s.findLastInFree(first, 0)
		if size := last - first + 1; size > selSize {
			selSize, sel = size, first
		}
		start = last + 1
	}
}

// align moves x to a multiple of a, earlier when every sector in between is
// free, else later (sgdisk's GPTData::Align).
func (s *sgdiskSim) align(x, a uint64) uint64 {
	if a <= 1 || x%a == 0 {
		return x
	}
	earlier := x / a * a
	later := earlier + a
	if earlier >= s.firstUsable && s.rangeFree(earlier, x-1) {
		return earlier
	}
	if later+a <= s.lastUsable && s.rangeFree(x+1, later) {
		return later
	}
	return x
}

// alignment is sgdisk's ComputeAlignment: 2048 unless existing partitions
// start off that grid.
func (s *sgdiskSim) alignment() uint64 {
	a := uint64(defaultAlignment)
	for _, p := range s.parts {
		for a > 1 && p.first%a != 0 {
			a /= 2
		}
	}
	return a
}

// create places one partition like `sgdisk --align-end --new=N:start:end`,
// with setAlign (disko's alignment option) overriding sgdisk's when non-zero.
func (s *sgdiskSim) create(start, end string, setAlign uint64) (extent, error) {
	a := s.alignment()
	if setAlign != 0 {
		a = setAlign
	}
	low := s.align(s.findFirstInLargest(), a)
	if low == 0 {
		return extent{}, fmt.Errorf("no free space left")
	}
	high := s.findLastInFree(low, a)
	first, err := ieeeToInt(start, low, high, low)
	if err != nil {
		return extent{}, fmt.Errorf("start %q: %w", start, err)
	}
	last, err := ieeeToInt(end, first, high, high)
	if err != nil {
		return extent{}, fmt.Errorf("end %q: %w", end, err)
	}
	first = s.align(first, a)
	if !s.isFree(first) || first > last || s.findLastInFree(first, 0) < last {
		return extent{}, fmt.Errorf("sectors %d-%d (start %q, end %q) do not fit in the free space", first, last, start, end)
	}
	e := extent{first, last}
	s.parts = append(s.parts, e)
	return e, nil
}

// ieeeToInt is sgdisk's IeeeToInt: a sector number from "N[KMGTPE]",
// "+N…" (relative to low, or to def when def is not high) or "-N…" (back
// from high). 0 or an empty string means def. Units are binary; a number
// without unit (or with "s") is sectors.
func ieeeToInt(in string, low, high, def uint64) (uint64, error) {
	in = strings.TrimLeft(in, " ")
	plus := byte(' ')
	if in != "" && (in[0] == '+' || in[0] == '-') {
		plus, in = in[0], in[1:]
	}
	num, suffix := splitNumber(in)
	if num == "" && in != "" {
		return 0, fmt.Errorf("not a number")
	}
	var n uint64
	if num != "" {
		v, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return 0, err
		}
		n = v
	}
	if n == 0 {
		return def, nil
	}
	if suffix != "" {
		shift, ok := sgdiskUnit(suffix[0])
		if !ok {
			return 0, fmt.Errorf("unknown unit %q", suffix)
		}
		mult := (uint64(1) << shift) / SectorSize
		if mult > 1 {
			if n > ^uint64(0)/mult {
				return 0, fmt.Errorf("too large")
			}
			n *= mult
		}
	}
	switch plus {
	case '+':
		if def == high {
			return n - 1 + low, nil
		}
		return n + def, nil
	case '-':
		if n > high {
			return 0, fmt.Errorf("larger than the disk")
		}
		return high - n, nil
	}
	return n, nil
}

// sgdiskUnit maps sgdisk's unit letters to log2 bytes; 's' is a sector.
func sgdiskUnit(c byte) (uint, bool) {
	switch c | 0x20 {
	case 'k':
		return 10, true
	case 'm':
		return 20, true
	case 'g':
		return 30, true
	case 't':
		return 40, true
	case 'p':
		return 50, true
	case 'e':
		return 60, true
	case 's':
		return 9, true
	}
	return 0, false
}

package pxe

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixlos/nixlos/pxe/wire"
)

// DiscoveryFile is where a discovery report of mac is kept in dir
// (Config.DiscoverDir): MAC with hyphens, ".json".
func DiscoveryFile(dir, mac string) string {
	return filepath.Join(dir, strings.ReplaceAll(mac, ":", "-")+".json")
}

// DefaultDiscoverDir is where `mkiso serve --discover` keeps discovery
// reports for a map file, and where `mkiso enroll` reads them: a
// "discovered" directory beside the map.
func DefaultDiscoverDir(mapFile string) string {
	return filepath.Join(filepath.Dir(mapFile), "discovered")
}

// SaveDiscovery writes d to DiscoveryFile(dir, d.MAC) (atomically, 0644:
// it holds hardware facts, no secrets).
func SaveDiscovery(dir string, d wire.Discovery) error {
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("discovery directory: %w", err)
	}
	dst := DiscoveryFile(dir, d.MAC)
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("discovery report: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("discovery report: %w", err)
	}
	return nil
}

// LoadDiscovery reads the discovery report of mac from dir. A missing
// report is an error wrapping os.ErrNotExist.
func LoadDiscovery(dir, mac string) (wire.Discovery, error) {
	c, err := wire.CanonicalMAC(mac)
	if err != nil {
		return wire.Discovery{}, err
	}
	f, err := os.Open(DiscoveryFile(dir, c))
	if err != nil {
		return wire.Discovery{}, err
	}
	defer f.Close()
	d, err := wire.DecodeDiscovery(f)
	if err != nil {
		return wire.Discovery{}, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if d.MAC != c {
		return wire.Discovery{}, fmt.Errorf("%s: report is for MAC %s, not %s", f.Name(), d.MAC, c)
	}
	return d, nil
}

// serveDiscover takes a discovery report (POST /v1/discover): only with
// --discover; the machine shows as discovered and the report is kept for
// mkiso enroll. A MAC that is in the map already is told so (409): it
// should install, not wait.
func (s *Server) serveDiscover(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Discover {
		http.Error(w, "discovery is off (start mkiso serve with --discover)", http.StatusNotFound)
		return
	}
	d, err := wire.DecodeDiscovery(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if mc, ok := s.reloadMap().Lookup(d.MAC); ok {
		http.Error(w, "MAC is in the map already, as host "+mc.Host, http.StatusConflict)
		return
	}
	if s.cfg.DiscoverDir != "" {
		if err := SaveDiscovery(s.cfg.DiscoverDir, d); err != nil {
			s.logf("discovery of %s: %v", d.MAC, err)
			http.Error(w, "cannot keep the report", http.StatusInternalServerError)
			return
		}
	}
	sum := d.Summary()
	s.cfg.Tracker.Discovered(d.MAC, sum)
	w.WriteHeader(http.StatusNoContent)
}

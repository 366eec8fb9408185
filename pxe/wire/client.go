package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxKeySize bounds the key a client accepts.
const maxKeySize = 64 << 10

// ReportStatus POSTs st to server's /v1/status (server is the nixlos.server
// URL). client may be nil (http.DefaultClient).
func ReportStatus(ctx context.Context, client *http.Client, server string, st Status) error {
	if client == nil {
		client = http.DefaultClient
	}
	body, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("status report: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(server, "/")+"/v1/status", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("status report: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("status report to %s: %w", server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("status report to %s: %s: %s", server, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// FetchKey GETs the age key for mac with the boot token from server's
// /v1/key. The key is returned, never included in an error. The caller
// verifies it (as for an embedded key) and writes it with mode 0600.
func FetchKey(ctx context.Context, client *http.Client, server, mac, token string) ([]byte, error) {
	if client == nil {
		client = http.DefaultClient
	}
	q := url.Values{"mac": {mac}, "token": {token}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(server, "/")+"/v1/key?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("fetch key: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch key from %s: %w", server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("fetch key from %s: %s: %s", server, resp.Status, strings.TrimSpace(string(msg)))
	}
	key, err := io.ReadAll(io.LimitReader(resp.Body, maxKeySize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch key from %s: %w", server, err)
	}
	if len(key) > maxKeySize {
		clear(key)
		return nil, fmt.Errorf("fetch key from %s: key larger than %d bytes", server, maxKeySize)
	}
	return key, nil
}

// FetchMachine GETs what the server's map says about mac from /v1/machine.
// It returns ErrUnknownMachine when the MAC is not in the map.
func FetchMachine(ctx context.Context, client *http.Client, server, mac string) (MachineInfo, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(server, "/")+"/v1/machine?"+url.Values{"mac": {mac}}.Encode(), nil)
	if err != nil {
		return MachineInfo{}, fmt.Errorf("machine settings: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return MachineInfo{}, fmt.Errorf("machine settings from %s: %w", server, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return MachineInfo{}, ErrUnknownMachine
	case resp.StatusCode != http.StatusOK:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return MachineInfo{}, fmt.Errorf("machine settings from %s: %s: %s", server, resp.Status, strings.TrimSpace(string(msg)))
	}
	mi, err := DecodeMachineInfo(resp.Body)
	if err != nil {
		return MachineInfo{}, fmt.Errorf("machine settings from %s: %w", server, err)
	}
	return mi, nil
}

// ErrUnknownMachine is FetchMachine's error for a MAC not in the server's map.
var ErrUnknownMachine = errors.New("MAC not in the server's map")

// PostDiscovery POSTs d to server's /v1/discover (server is the
// nixlos.server URL). client may be nil (http.DefaultClient).
func PostDiscovery(ctx context.Context, client *http.Client, server string, d Discovery) error {
	if client == nil {
		client = http.DefaultClient
	}
	body, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("discovery report: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(server, "/")+"/v1/discover", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("discovery report: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("discovery report to %s: %w", server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusConflict {
		return ErrEnrolled
	}
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("discovery report to %s: %s: %s", server, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// ErrEnrolled is PostDiscovery's error when the MAC is in the map already.
var ErrEnrolled = errors.New("MAC is in the server's map already")

package gossip

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile is the file in Config.DataDir: the node ID and the live
// members last known, as JSON, replaced atomically (write, sync, rename).
const stateFile = "gossip-state.json"

type savedState struct {
	ID      string        `json:"id"`
	Members []savedMember `json:"members"`
}

type savedMember struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// loadState reads the saved state; nil without a data directory or file.
func loadState(dir string) (*savedState, error) {
	if dir == "" {
		return nil, nil
	}
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s savedState
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	if len(s.ID) > MaxIDLen {
		return nil, errors.New("gossip: saved node ID too long")
	}
	return &s, nil
}

// snapshotLocked captures what to save: the ID and the live members.
func (g *Gossip) snapshotLocked() *savedState {
	s := &savedState{ID: g.id}
	for _, m := range g.list {
		if m != g.self && m.live() {
			s.Members = append(s.Members, savedMember{ID: m.id, Addr: m.addr})
		}
	}
	return s
}

// writeState replaces the state file. Called without mu.
func (g *Gossip) writeState(s *savedState) error {
	g.saveMu.Lock()
	defer g.saveMu.Unlock()
	dir := g.cfg.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, stateFile+".*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // after a successful rename: already gone
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, stateFile))
}

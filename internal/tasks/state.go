package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// What a Scanner remembers of the tasks it saw stuck can outlive the
// process in Config.StateFile, so that runs of --once (node-problem-detector
// runs one every few minutes) see a task stuck since an earlier run, as the
// daemon does across its probe runs. The file holds only the tasks stuck at
// the last scan, and the boot it was written in: task identities (TID and
// start time) mean nothing after a reboot.

// maxStateBytes bounds a state file read: maxTracked tasks at well under
// 200 bytes each.
const maxStateBytes = 8 << 20

type stateFile struct {
	BootID string       `json:"boot_id"`
	Tasks  []stateEntry `json:"tasks"`
}

type stateEntry struct {
	TID      int       `json:"tid"`
	Start    uint64    `json:"start"`
	First    time.Time `json:"first_seen"`
	Switches uint64    `json:"switches"`
	OK       bool      `json:"switches_read"`
}

// bootID is the inspected node's boot id, "" when it cannot be read.
func (x *scan) bootID() string {
	data, err := os.ReadFile(filepath.Join(x.proc, "sys", "kernel", "random", "boot_id"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// loadState reads the state file once per Scanner, before its first scan:
// a missing file is an empty memory; a file of another boot, or one that
// cannot be read, is ignored (the error says why).
func (x *scan) loadState(boot string) error {
	sc := x.sc
	sc.mu.Lock()
	loaded := sc.loaded
	sc.loaded = true
	sc.mu.Unlock()
	if sc.cfg.StateFile == "" || loaded {
		return nil
	}
	f, err := os.Open(sc.cfg.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stuck-task state %s: %w", sc.cfg.StateFile, err)
	}
	defer f.Close()
	var st stateFile
	if err := json.NewDecoder(io.LimitReader(f, maxStateBytes)).Decode(&st); err != nil {
		return fmt.Errorf("stuck-task state %s: %w", sc.cfg.StateFile, err)
	}
	if boot == "" || st.BootID != boot {
		return nil // another boot: its TIDs are not these tasks
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, e := range st.Tasks {
		if len(sc.seen) >= maxTracked {
			break
		}
		sc.seen[taskKey{e.TID, e.Start}] = seenTask{first: e.First, switches: e.Switches, ok: e.OK}
	}
	return nil
}

// saveState writes what this scan saw stuck, replacing the file atomically.
func (x *scan) saveState(boot string) error {
	path := x.sc.cfg.StateFile
	if path == "" || boot == "" {
		return nil
	}
	st := stateFile{BootID: boot, Tasks: make([]stateEntry, 0, len(x.seen))}
	for k, v := range x.seen {
		st.Tasks = append(st.Tasks, stateEntry{TID: k.tid, Start: k.start, First: v.first, Switches: v.switches, OK: v.ok})
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".stuck-tasks-*")
	if err != nil {
		return fmt.Errorf("stuck-task state: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("stuck-task state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("stuck-task state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("stuck-task state: %w", err)
	}
	return nil
}

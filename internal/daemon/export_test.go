package daemon

import (
	"slices"

	"github.com/mountwatchd/mountwatchd/internal/check"
	"github.com/mountwatchd/mountwatchd/internal/export"
)

// State is the latest published state; never nil. Only the tests read it
// this way: the daemon publishes through Config.Publish.
func (d *Daemon) State() *export.State { return d.state.Load() }

// Checks lists the registered checks' ids in catalogue order.
func (d *Daemon) Checks() []check.ID {
	var ids []check.ID
	for _, c := range d.cfg.Checks {
		ids = append(ids, c.Decl().ID)
	}
	return slices.Clip(ids)
}

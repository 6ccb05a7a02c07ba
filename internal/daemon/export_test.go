package daemon

import (
	"slices"

	"github.com/mountwatchd/mountwatchd/internal/export"
	"github.com/mountwatchd/mountwatchd/internal/finding"
)

// State is the latest published state; never nil. Only the tests read it
// this way: the daemon publishes through Config.Publish.
func (d *Daemon) State() *export.State { return d.state.Load() }

// Checks lists the registered checks' ids in catalogue order.
func (d *Daemon) Checks() []finding.ID {
	var ids []finding.ID
	for _, c := range d.cfg.Checks {
		ids = append(ids, c.Decl().ID)
	}
	return slices.Clip(ids)
}

package kubeapi

import (
	"strings"

	"github.com/mountwatchd/mountwatchd/internal/finding"
	"github.com/mountwatchd/mountwatchd/internal/kubelink"
)

// Event types (core/v1 Event.Type).
const (
	typeWarning = "Warning"
	typeNormal  = "Normal"
)

// Reason is the reason of the Warning event a check's finding raises: its
// ID in CamelCase (hung_mount: HungMount). Check IDs never change, so
// neither do reasons.
func Reason(id finding.ID) string {
	var b strings.Builder
	for _, part := range strings.Split(string(id), "_") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// ClearedReason is the reason of the Normal event when the problem clears:
// Reason followed by "Cleared" (HungMountCleared).
func ClearedReason(id finding.ID) string { return Reason(id) + "Cleared" }

// Condition reasons that are not a check's.
const (
	// ReasonNoProblem is the condition's reason while no warning or
	// critical problem exists.
	ReasonNoProblem = "NoMountProblem"
	// ReasonStopped is the condition's reason after a clean stop with
	// clearing on stop configured.
	ReasonStopped = "MountwatchdStopped"
)

// TaintKey is the taint's key; DefaultConditionType the node condition's
// default type (set in kubelink, where the flags are).
const (
	TaintKey             = kubelink.TaintKey
	DefaultConditionType = kubelink.DefaultConditionType
)

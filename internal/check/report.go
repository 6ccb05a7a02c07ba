package check

import (
	"errors"
	"slices"
	"strings"
)

// ErrNoTrustedXattrs is reported by the scanning checks when this process
// lacks CAP_SYS_ADMIN: the kernel then hides trusted.* xattrs without an
// error, so a scan for trusted.overlay.* would see nothing and look healthy.
// It is a SkipError: with nothing else wrong and nothing found, the check is
// reported as skipped for this reason, not as failed.
var ErrNoTrustedXattrs error = &SkipError{Cause: "no CAP_SYS_ADMIN",
	Reason: "trusted.overlay.* xattrs are invisible without CAP_SYS_ADMIN; only user.overlay.* were checked"}

// SkipError is returned by a check that could not see what it needs for a
// reason of how it runs, not of the system (no CAP_SYS_ADMIN: trusted.*
// xattrs are invisible). When it is the check's only error and nothing was
// found, the Runner reports the check as skipped with the reason, and the
// report's status follows the checks that ran.
type SkipError struct {
	Reason string // the whole reason, for the report
	Cause  string // a few words, for the summary line ("no CAP_SYS_ADMIN")
}

func (e *SkipError) Error() string { return e.Reason }

// skipReason returns the reason when err is only SkipErrors (one, or
// several joined).
func skipReason(err error) (reason, cause string, ok bool) {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var reasons, causes []string
	for _, e := range errs {
		var se *SkipError
		if !errors.As(e, &se) {
			return "", "", false
		}
		if !slices.Contains(reasons, se.Reason) {
			reasons = append(reasons, se.Reason)
		}
		if se.Cause != "" && !slices.Contains(causes, se.Cause) {
			causes = append(causes, se.Cause)
		}
	}
	return strings.Join(reasons, "; "), strings.Join(causes, ", "), len(reasons) > 0
}

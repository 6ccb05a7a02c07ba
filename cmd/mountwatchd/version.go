package main

import (
	"runtime/debug"

	"github.com/prometheus/common/version"
)

// The Makefile sets prometheus/common/version's variables with -ldflags -X
// (VERSION from git describe). A plain `go build`, `go run` or
// `go install github.com/mountwatchd/mountwatchd/cmd/mountwatchd@v0.1.0`
// sets none of them, and --version and mountwatchd_build_info would say
// nothing. The Go toolchain records what it knows in the binary instead: the
// module version for `go install ...@version` (and a pseudo-version for a
// build in a git checkout, Go 1.24+), and the commit and its time when it
// builds in a git checkout with VCS stamping on (the default).
func init() { fillVersion(debug.ReadBuildInfo()) }

// fillVersion sets whichever of Version, Revision and BuildDate the linker
// did not, from the build info; Version falls back to "dev".
func fillVersion(bi *debug.BuildInfo, ok bool) {
	if version.Version == "" {
		version.Version = "dev"
		if ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version.Version = bi.Main.Version
		}
	}
	if !ok {
		return
	}
	var rev, when string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if version.Revision == "" && rev != "" {
		if modified {
			rev += "-modified"
		}
		version.Revision = rev
	}
	if version.BuildDate == "" {
		version.BuildDate = when
	}
}

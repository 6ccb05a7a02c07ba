// Package bench is mountwatchd's node-scale benchmark (make bench): it
// builds real mount tables in a private mount namespace and times the
// built binary beside its baselines from the same run — the kernel floor
// (reading mountinfo), findmnt and node_exporter's filesystem collector on
// the same table — and prints one table of figures. It drives only the
// binary, its flags and its HTTP endpoints, so it does not depend on how
// the internal packages are laid out.
//
// It reports; it never passes or fails on time. BENCHMARKS.md has the
// latest figures and how to read them.
package bench

//go:build race

package main

// raceEnabled builds the binary under test with -race when the tests run
// with it (make test), so a data race in the real daemon, under real
// scrapes, fails the test that stops it.
const raceEnabled = true

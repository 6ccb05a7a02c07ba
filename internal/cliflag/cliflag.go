// Package cliflag holds the kingpin flag values mountwatchd's flags share:
// integers that refuse fractions, strings that refuse an empty value, enums
// whose errors name the flag, and the "--flag -" fix-up of the command
// line. Every error names its flag.
//
// It is for the packages that define their own flags beside their
// settings (cmd/mountwatchd, internal/check); the packages the exporters
// import (finding, export, probe, mounts...) must not import it, nor
// kingpin.
package cliflag

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/alecthomas/kingpin/v2"
)

// IntValue is an integer flag that accepts only integers: kingpin's IntVar
// parses with ParseFloat, so "--target.pid 1.5" inspected PID 1 and "1e3"
// PID 1000. Errors name the flag.
type IntValue struct {
	p    *int
	name string
	set  bool // given on the command line
}

// Set parses s as a whole number (kingpin.Value).
func (v *IntValue) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("--%s=%q: want a whole number", v.name, s)
	}
	*v.p = int(n)
	return nil
}

func (v *IntValue) String() string { return strconv.Itoa(*v.p) }

// Given reports whether the flag was given on the command line.
func (v *IntValue) Given() bool { return v.set }

// Int registers an integer-only flag; the returned value says whether it
// was given.
func Int(app *kingpin.Application, name, help, def string, p *int) *IntValue {
	v := &IntValue{p: p, name: name}
	app.Flag(name, help).Default(def).IsSetByUser(&v.set).SetValue(v)
	return v
}

// stringValue is a string flag that refuses an empty value (kingpin's
// StringVar takes "--mountinfo=" as "not given").
type stringValue struct {
	p    *string
	name string
}

func (v *stringValue) Set(s string) error {
	if s == "" {
		return fmt.Errorf("--%s: empty value", v.name)
	}
	*v.p = s
	return nil
}

func (v *stringValue) String() string { return *v.p }

// NonEmpty is a kingpin.Value that sets *p and refuses an empty value, its
// error naming the flag: for SetValue.
func NonEmpty(p *string, name string) kingpin.Value { return &stringValue{p: p, name: name} }

// JoinDashValues turns "--flag -" into "--flag=-" for flags that take a
// value: kingpin reads a lone "-" after a flag as nothing at all, so
// "--mountinfo -" silently dropped the "-" and checked the live system.
func JoinDashValues(app *kingpin.Application, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if name, ok := strings.CutPrefix(a, "--"); ok && !strings.Contains(name, "=") && i+1 < len(args) && args[i+1] == "-" {
			if f := app.GetFlag(name); f != nil && !f.Model().IsBoolFlag() {
				out = append(out, a+"=-")
				i++
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// enumValue is one of a fixed set of words; unlike kingpin's EnumVar, its
// error names the flag.
type enumValue struct {
	p       *string
	name    string
	choices []string
}

func (v *enumValue) Set(s string) error {
	for _, c := range v.choices {
		if s == c {
			*v.p = s
			return nil
		}
	}
	return fmt.Errorf("--%s=%q: want one of %s", v.name, s, strings.Join(v.choices, ", "))
}

func (v *enumValue) String() string { return *v.p }

// Enum registers a flag that takes one of choices.
func Enum(app *kingpin.Application, name, help, def string, p *string, choices ...string) {
	app.Flag(name, help).Default(def).SetValue(&enumValue{p: p, name: name, choices: choices})
}

package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/alecthomas/kingpin/v2"
)

// intValue is an integer flag that accepts only integers: kingpin's IntVar
// parses with ParseFloat, so "--target.pid 1.5" inspected PID 1 and "1e3"
// PID 1000. Errors name the flag.
type intValue struct {
	p    *int
	name string
	set  bool // given on the command line
}

func (v *intValue) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("--%s=%q: want a whole number", v.name, s)
	}
	*v.p = int(n)
	return nil
}

func (v *intValue) String() string { return strconv.Itoa(*v.p) }

// intFlag registers an integer-only flag; the returned value says whether
// it was given.
func intFlag(app *kingpin.Application, name, help, def string, p *int) *intValue {
	v := &intValue{p: p, name: name}
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

// joinDashValues turns "--flag -" into "--flag=-" for flags that take a
// value: kingpin reads a lone "-" after a flag as nothing at all, so
// "--mountinfo -" silently dropped the "-" and checked the live system.
func joinDashValues(app *kingpin.Application, args []string) []string {
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

func enumFlag(app *kingpin.Application, name, help, def string, p *string, choices ...string) {
	app.Flag(name, help).Default(def).SetValue(&enumValue{p: p, name: name, choices: choices})
}

package testenv

import "strings"

// ExpositionLabels reads the label pairs of a Prometheus text exposition
// line from just after its "{": every complete name="value" pair (values
// unescaped) up to the closing "}" or an incomplete pair.
func ExpositionLabels(s string) map[string]string {
	out := map[string]string{}
	for {
		s = strings.TrimLeft(s, ",")
		name, rest, ok := strings.Cut(s, `="`)
		if !ok || name == "" || strings.ContainsAny(name, `}" `) {
			return out
		}
		var v strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				if rest[i] == 'n' {
					v.WriteByte('\n')
					continue
				}
			}
			v.WriteByte(rest[i])
		}
		if i == len(rest) {
			return out // the value is not closed
		}
		out[name] = v.String()
		s = rest[i+1:]
	}
}

// HasLabels reports whether got has every pair of want.
func HasLabels(got, want map[string]string) bool {
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return false
		}
	}
	return true
}

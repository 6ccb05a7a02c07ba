package daemon

// said is the last thing logged about one matter (the table's read error,
// its unparsable lines, a check's error or skip reason, the systemd status,
// the table watch's error): a state the loop sees on every poll is logged
// once when it changes, not on every poll.
type said struct{ last string }

// update records v and reports what was said before and whether v is new.
func (s *said) update(v string) (prev string, changed bool) {
	prev = s.last
	if v == prev {
		return prev, false
	}
	s.last = v
	return prev, true
}

package logging

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap/zapcore"
)

// SendFunc sends one journal entry; journal.Send in production.
type SendFunc func(message string, priority journal.Priority, vars map[string]string) error

// JournalCore is a zapcore.Core that writes each entry to journald with its
// fields as journal fields (upper-cased: mount_point becomes MOUNT_POINT),
// MESSAGE from the entry and PRIORITY from the level, or from an int field
// named priorityField when present.
//
// Entries are handed to one sender goroutine through a bounded queue, so a
// slow or hung journald never blocks the caller. An entry that cannot be
// sent (journald gone, queue full) is written to the fallback core (JSON on
// stderr) instead, and the daemon keeps running; sending resumes by itself
// when journald answers again.
type JournalCore struct {
	zapcore.LevelEnabler
	shared        *journalShared
	fields        []zapcore.Field
	identifier    string
	priorityField string
}

type journalShared struct {
	send     SendFunc
	fallback zapcore.Core
	mu       sync.RWMutex // held for writing only to close queue
	closed   bool
	queue    chan journalEntry
	failing  atomic.Bool
	failures atomic.Uint64
}

type journalEntry struct {
	flushed chan struct{} // a Sync marker, not an entry
	ent     zapcore.Entry
	fields  []zapcore.Field
	msg     string
	prio    journal.Priority
	vars    map[string]string
}

// NewJournalCore returns a core sending to journald through send (nil:
// journal.Send), falling back to fallback. identifier is SYSLOG_IDENTIFIER.
func NewJournalCore(level zapcore.LevelEnabler, send SendFunc, fallback zapcore.Core, identifier, priorityField string) *JournalCore {
	if send == nil {
		send = journal.Send
	}
	sh := &journalShared{send: send, fallback: fallback, queue: make(chan journalEntry, 1024)}
	go sh.run()
	return &JournalCore{LevelEnabler: level, shared: sh, identifier: identifier, priorityField: priorityField}
}

// Failures is how many entries went to the fallback instead of journald.
func (c *JournalCore) Failures() uint64 { return c.shared.failures.Load() }

// With implements zapcore.Core.
func (c *JournalCore) With(fields []zapcore.Field) zapcore.Core {
	clone := *c
	clone.fields = append(append([]zapcore.Field(nil), c.fields...), fields...)
	return &clone
}

// Check implements zapcore.Core.
func (c *JournalCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

// Write implements zapcore.Core: it encodes the entry now and queues it.
func (c *JournalCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	all := append(append([]zapcore.Field(nil), c.fields...), fields...)
	enc := zapcore.NewMapObjectEncoder()
	prio := levelPriority(ent.Level)
	for _, f := range all {
		if f.Key == c.priorityField && c.priorityField != "" && isInt(f.Type) && f.Integer >= 0 && f.Integer <= 7 {
			prio = journal.Priority(f.Integer)
			continue
		}
		f.AddTo(enc)
	}
	vars := make(map[string]string, len(enc.Fields)+4)
	for k, v := range enc.Fields {
		if name := FieldName(k); name != "" {
			vars[name] = fieldValue(v)
		}
	}
	if c.identifier != "" {
		vars["SYSLOG_IDENTIFIER"] = c.identifier
	}
	if ent.LoggerName != "" {
		vars["LOGGER"] = ent.LoggerName
	}
	if ent.Caller.Defined {
		vars["CODE_FILE"] = ent.Caller.File
		vars["CODE_LINE"] = strconv.Itoa(ent.Caller.Line)
		if ent.Caller.Function != "" {
			vars["CODE_FUNC"] = ent.Caller.Function
		}
	}
	if ent.Stack != "" {
		vars["STACK"] = ent.Stack
	}
	sh := c.shared
	e := journalEntry{ent: ent, fields: all, msg: ent.Message, prio: prio, vars: vars}
	if !sh.enqueue(e) { // journald is not keeping up, or closed: do not wait for it
		sh.fallbackWrite(e, "journal queue full or closed")
	}
	return nil
}

func (sh *journalShared) enqueue(e journalEntry) bool {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if sh.closed {
		return false
	}
	select {
	case sh.queue <- e:
		return true
	default:
		return false
	}
}

func (sh *journalShared) run() {
	for e := range sh.queue {
		if e.flushed != nil {
			close(e.flushed)
			continue
		}
		if err := sh.send(e.msg, e.prio, e.vars); err != nil {
			sh.fallbackWrite(e, err.Error())
		} else if sh.failing.Swap(false) {
			_ = sh.fallback.Write(zapcore.Entry{Level: zapcore.InfoLevel, Time: time.Now(), Message: "logging to journald again"}, nil)
		}
	}
}

func (sh *journalShared) fallbackWrite(e journalEntry, why string) {
	sh.failures.Add(1)
	if !sh.failing.Swap(true) {
		_ = sh.fallback.Write(zapcore.Entry{Level: zapcore.WarnLevel, Time: time.Now(),
			Message: "journald does not take log entries; logging to stderr until it does"},
			[]zapcore.Field{{Key: "error", Type: zapcore.StringType, String: why}})
	}
	if sh.fallback.Enabled(e.ent.Level) {
		_ = sh.fallback.Write(e.ent, e.fields)
	}
}

// Sync implements zapcore.Core: it waits (at most 2s) until the queued
// entries were sent or written to the fallback.
func (c *JournalCore) Sync() error {
	flushed := make(chan struct{})
	if c.shared.enqueue(journalEntry{flushed: flushed}) {
		select {
		case <-flushed:
		case <-time.After(2 * time.Second):
		}
	}
	return c.shared.fallback.Sync()
}

// Close sends what is queued (waiting at most 2s) and stops the sender;
// entries written afterwards go to the fallback.
func (c *JournalCore) Close() {
	_ = c.Sync()
	c.shared.mu.Lock()
	defer c.shared.mu.Unlock()
	if !c.shared.closed {
		c.shared.closed = true
		close(c.shared.queue)
	}
}

func isInt(t zapcore.FieldType) bool {
	switch t {
	case zapcore.Int64Type, zapcore.Int32Type, zapcore.Int16Type, zapcore.Int8Type,
		zapcore.Uint64Type, zapcore.Uint32Type, zapcore.Uint16Type, zapcore.Uint8Type:
		return true
	}
	return false
}

func levelPriority(l zapcore.Level) journal.Priority {
	switch {
	case l <= zapcore.DebugLevel:
		return journal.PriDebug
	case l == zapcore.InfoLevel:
		return journal.PriInfo
	case l == zapcore.WarnLevel:
		return journal.PriWarning
	case l == zapcore.ErrorLevel:
		return journal.PriErr
	}
	return journal.PriCrit
}

// FieldName turns a zap field key into a journal field name: upper case
// letters, digits and underscores, not starting with an underscore (those
// are trusted fields set by journald), at most 64 characters. It returns ""
// for a key that has nothing left, and leaves out the names journald sets
// itself from the message and priority.
func FieldName(key string) string {
	b := make([]byte, 0, len(key))
	for i := 0; i < len(key) && len(b) < 64; i++ {
		ch := key[i]
		switch {
		case ch >= 'a' && ch <= 'z':
			b = append(b, ch-'a'+'A')
		case ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
			b = append(b, ch)
		default:
			if len(b) > 0 {
				b = append(b, '_')
			}
		}
	}
	name := strings.TrimRight(string(b), "_")
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		return ""
	}
	switch name {
	case "MESSAGE", "PRIORITY":
		return ""
	}
	return name
}

func fieldValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case time.Duration:
		return x.String()
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return fmt.Sprint(x)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case fmt.Stringer:
		return x.String()
	case error:
		return x.Error()
	}
	return fmt.Sprint(v)
}

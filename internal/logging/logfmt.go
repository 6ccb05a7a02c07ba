package logging

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"time"

	"go.uber.org/zap/zapcore"
)

// Formats of --log.format.
const (
	FormatJSON    = "json"
	FormatLogfmt  = "logfmt"
	FormatConsole = "console"
)

// Formats lists every --log.format, the default first.
var Formats = []string{FormatJSON, FormatLogfmt, FormatConsole}

// slogCore is a zap core that writes through log/slog's TextHandler: logfmt
// (key=value, values quoted when they need it), as node_exporter writes with
// --log.format=logfmt. Callers keep logging with zap; only the encoding
// differs. Quoting and escaping are slog's, so a mount point with a newline
// or a quote in it stays on one line and parses back.
type slogCore struct {
	zapcore.LevelEnabler
	h      slog.Handler
	fields []zapcore.Field
}

// newLogfmtCore writes logfmt lines to w.
func newLogfmtCore(level zapcore.LevelEnabler, w io.Writer) zapcore.Core {
	h := slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug, // zap's level decides
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey: // the same instant format as the JSON lines
				if t, ok := a.Value.Any().(time.Time); ok {
					return slog.String(slog.TimeKey, t.Format("2006-01-02T15:04:05.000Z0700"))
				}
			case slog.LevelKey: // zap's names: info, warn, error, debug
				if l, ok := a.Value.Any().(slog.Level); ok {
					return slog.String(slog.LevelKey, slogLevel(l).String())
				}
			}
			return a
		},
	})
	return &slogCore{LevelEnabler: level, h: h}
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{LevelEnabler: c.LevelEnabler, h: c.h, fields: append(slices.Clip(c.fields), fields...)}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, toSlogLevel(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	for _, fs := range [][]zapcore.Field{c.fields, fields} {
		for _, f := range fs {
			// Each field through zap's own encoding (errors as their text,
			// durations, objects), then in the order it was given.
			enc := zapcore.NewMapObjectEncoder()
			f.AddTo(enc)
			keys := make([]string, 0, len(enc.Fields))
			for k := range enc.Fields {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				r.AddAttrs(slog.Any(k, enc.Fields[k]))
			}
		}
	}
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

func toSlogLevel(l zapcore.Level) slog.Level {
	switch {
	case l >= zapcore.ErrorLevel:
		return slog.LevelError
	case l >= zapcore.WarnLevel:
		return slog.LevelWarn
	case l >= zapcore.InfoLevel:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

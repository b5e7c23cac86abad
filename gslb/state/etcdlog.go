package state

import (
	"context"
	"log/slog"
	"slices"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newZapToSlog returns a zap logger (what the etcd client takes) that
// writes to l, so the client logs where gslbd logs and is silent when l
// is; the client's own default writes to stderr. Its records go one level
// down (info and warn to debug, error to warn) and its debug records are
// dropped: it logs every request at debug and every failed attempt as a
// warning, which the store's own errors and logs already report.
func newZapToSlog(l *slog.Logger) *zap.Logger { return zap.New(slogCore{l: l}) }

// slogCore is a zapcore.Core over an slog.Logger.
type slogCore struct {
	l     *slog.Logger
	attrs []slog.Attr // from With
}

func (c slogCore) Enabled(lvl zapcore.Level) bool {
	return lvl > zapcore.DebugLevel && c.l.Enabled(context.Background(), slogLevel(lvl))
}

func (c slogCore) With(fields []zapcore.Field) zapcore.Core {
	return slogCore{l: c.l, attrs: append(slices.Clip(c.attrs), zapAttrs(fields)...)}
}

func (c slogCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c slogCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	attrs := append(slices.Clip(c.attrs), zapAttrs(fields)...)
	if ent.LoggerName != "" {
		attrs = append(attrs, slog.String("logger", ent.LoggerName))
	}
	c.l.LogAttrs(context.Background(), slogLevel(ent.Level), ent.Message, attrs...)
	return nil
}

func (slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	if l <= zapcore.WarnLevel {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// zapAttrs turns zap fields into slog attributes, in key order.
func zapAttrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	slices.SortFunc(attrs, func(a, b slog.Attr) int { return strings.Compare(a.Key, b.Key) })
	return attrs
}

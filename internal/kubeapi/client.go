package kubeapi

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// NewClient returns the API the reporter uses, with the credentials of
// kubeconfig, or, when it is empty, of the pod's ServiceAccount (in-cluster
// config). Every request carries timeout as its HTTP deadline besides its
// own.
func NewClient(kubeconfig, userAgent string, timeout time.Duration) (API, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
	} else {
		cfg, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("no API access: not in a pod with a ServiceAccount token (KUBERNETES_SERVICE_HOST unset) and no kubeconfig given: %w", err)
		}
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
	}
	cfg.UserAgent = userAgent
	cfg.Timeout = timeout
	return newRESTAPI(cfg)
}

// LogTo sends client-go's own log lines (klog) to log: errors as errors,
// the rest at debug.
func LogTo(log *zap.Logger) {
	klog.SetLogger(logr.New(&zapSink{log: log.With(zap.String("component", "client-go"))}))
}

// zapSink is a logr.LogSink on zap.
type zapSink struct {
	log  *zap.Logger
	name string
}

func (s *zapSink) Init(logr.RuntimeInfo) {}

// Enabled: klog's V(n) levels are debug detail.
func (s *zapSink) Enabled(level int) bool {
	return s.log.Core().Enabled(zapcore.DebugLevel) || level == 0
}

func (s *zapSink) Info(level int, msg string, kv ...any) {
	lvl := zapcore.DebugLevel
	if level == 0 {
		lvl = zapcore.InfoLevel
	}
	if ce := s.log.Check(lvl, msg); ce != nil {
		ce.Write(fields(kv)...)
	}
}

func (s *zapSink) Error(err error, msg string, kv ...any) {
	s.log.Error(msg, append(fields(kv), zap.Error(err))...)
}

func (s *zapSink) WithValues(kv ...any) logr.LogSink {
	return &zapSink{log: s.log.With(fields(kv)...), name: s.name}
}

func (s *zapSink) WithName(name string) logr.LogSink {
	return &zapSink{log: s.log.Named(name), name: name}
}

func fields(kv []any) []zap.Field {
	out := make([]zap.Field, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			k = fmt.Sprint(kv[i])
		}
		out = append(out, zap.Any(k, kv[i+1]))
	}
	return out
}

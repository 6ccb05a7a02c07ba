module github.com/mountwatchd/mountwatchd

go 1.26.0

require (
	github.com/alecthomas/kingpin/v2 v2.4.0
	github.com/moby/sys/mountinfo v0.7.3
	github.com/prometheus/common v0.73.1
	go.uber.org/zap v1.28.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/alecthomas/units v0.0.0-20240927000941-0f3dac36c52b // indirect
	github.com/xhit/go-str2duration/v2 v2.1.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
)

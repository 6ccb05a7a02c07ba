package tasks

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Task is one task stuck on a FUSE or network filesystem.
type Task struct {
	PID   int    `json:"pid"`
	TID   int    `json:"tid"`
	Comm  string `json:"comm"` // from stat, never cmdline
	State string `json:"state"`
	Wchan string `json:"wchan"`
	// Syscall is the system call it is blocked in ("none" outside one:
	// a page fault).
	Syscall string `json:"syscall"`
	// Family is the kind of filesystem it waits on (FamilyFUSE, ...).
	Family string `json:"family"`
	// Conn is the connection (major:minor) it waits on, "" when the
	// kernel does not say which.
	Conn string `json:"connection,omitempty"`
	// MountID is the mount of the descriptor it works on, when that mount
	// is in the inspected mount table; FSType its filesystem type.
	MountID int    `json:"mount_id,omitempty"`
	FSType  string `json:"fstype,omitempty"`
	// By says how Conn was found: "fd" (the descriptor the call works
	// on), "dirfd" (the directory a relative path started from),
	// "pod_volume" (the only connection with requests waiting, or found
	// hung, among the task's pod's volumes), "mount_namespace" (the same
	// among the FUSE mounts of the task's own mount namespace), "fusectl"
	// (the only FUSE connection with requests waiting), "probe" (without
	// fusectl: the only FUSE connection the probe found hung).
	By  string `json:"attributed_by,omitempty"`
	Pod *Pod   `json:"pod,omitempty"`
	// FirstSeen is when this process first saw the task in this wait: the
	// kernel does not say when a wait began, so it is the first scan that
	// found it, kept while the task has not run since (its context switch
	// counts did not change).
	FirstSeen time.Time `json:"first_seen"`
}

// PodTasks counts the stuck tasks of one pod (and container).
type PodTasks struct {
	Pod
	Tasks int `json:"tasks"`
}

// Conn is what is stuck on one connection.
type Conn struct {
	Dev   string    `json:"connection"`
	Tasks int       `json:"tasks"`
	Since time.Time `json:"since"` // the earliest FirstSeen of its tasks
	// Pods are the pods with stuck tasks, most tasks first, at most
	// DefaultMaxPods; NodeTasks counts the tasks in no pod, and NodeList
	// names the first few, longest stuck first.
	Pods      []PodTasks `json:"pods,omitempty"`
	MorePods  int        `json:"more_pods,omitempty"`
	NodeTasks int        `json:"node_tasks,omitempty"`
	NodeList  []NodeTask `json:"node_task_list,omitempty"`
}

// NodeNames names the connection's stuck tasks in no pod, by command name
// and PID, the kubelet's said so ("kubelet PID 812, the kubelet; rsync PID
// 4242; 3 more"); "" when none is listed.
func (c *Conn) NodeNames() string {
	if len(c.NodeList) == 0 {
		return ""
	}
	names := make([]string, 0, len(c.NodeList)+1)
	for _, t := range c.NodeList {
		n := t.Comm + " PID " + strconv.Itoa(t.PID)
		if t.Kubelet {
			n += ", the kubelet"
		}
		names = append(names, n)
	}
	if more := c.NodeTasks - len(c.NodeList); more > 0 {
		names = append(names, strconv.Itoa(more)+" more")
	}
	return strings.Join(names, "; ")
}

// NodeTask names a stuck task in no pod: its command name (comm, from
// stat; never its command line) and its process's PID. Kubelet says the
// command is kubelet's (its volume manager, mounting or unmounting).
type NodeTask struct {
	Comm    string `json:"comm"`
	PID     int    `json:"pid"`
	Kubelet bool   `json:"kubelet,omitempty"`
}

// Report is one scan of the node's tasks.
type Report struct {
	Taken time.Time `json:"taken"`
	// Examined counts the tasks looked at; Truncated says the scan stopped
	// at Config.MaxTasks.
	Examined  int  `json:"examined"`
	Truncated bool `json:"truncated,omitempty"`
	// Stuck counts every stuck task found; Tasks lists the longest stuck,
	// at most Config.MaxReported.
	Stuck int    `json:"stuck"`
	Tasks []Task `json:"tasks,omitempty"`
	// Conns has the stuck tasks attributed to a connection, by major:minor.
	Conns map[string]*Conn `json:"connections,omitempty"`
	// Unattributed counts stuck tasks whose connection the kernel does not
	// say (several FUSE connections have waiting requests, or an NFS wait
	// outside a descriptor's call).
	Unattributed int `json:"unattributed"`
	// Unreadable counts tasks whose files could not be read for another
	// reason than the task exiting; Errors holds the first few reasons.
	Unreadable int      `json:"unreadable,omitempty"`
	Errors     []string `json:"errors,omitempty"`
	// Skipped says why no task was examined although nothing failed: no
	// task can be waiting on a FUSE or network server.
	Skipped string `json:"skipped,omitempty"`
	// Err says why there is no scan: procfs could not be listed, or an
	// earlier scan has not returned.
	Err error `json:"-"`
}

// MarshalJSON writes Err as "error".
func (r *Report) MarshalJSON() ([]byte, error) {
	type plain Report
	e := ""
	if r.Err != nil {
		e = r.Err.Error()
	}
	return json.Marshal(struct {
		*plain
		Error string `json:"error,omitempty"`
	}{(*plain)(r), e})
}

// Conn returns what is stuck on connection dev, or nil.
func (r *Report) Conn(dev string) *Conn {
	if r == nil {
		return nil
	}
	return r.Conns[dev]
}

package probe

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

type spawned struct {
	h   *helper
	err error
}

// spawn starts a helper from a thread that lives as long as we do:
// PR_SET_PDEATHSIG fires when the thread that started a child exits, not
// the process, and the Go runtime ends threads (a probe's locked thread,
// for one) at will.
func (f *HelperFS) spawn() (*helper, error) {
	f.spawnOnce.Do(func() {
		f.spawnReq = make(chan chan spawned)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for reply := range f.spawnReq {
				h, err := f.startHelper()
				reply <- spawned{h, err}
			}
		}()
	})
	reply := make(chan spawned)
	f.spawnReq <- reply
	s := <-reply
	return s.h, s.err
}

func (f *HelperFS) startHelper() (*helper, error) {
	cloexecInherited()
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:   f.cfg.Exe,
		Args:   append([]string{"mountwatchd"}, f.cfg.Args...),
		Env:    []string{},
		Dir:    "/",
		Stdin:  inR,
		Stdout: outW,
		// Stderr nil: /dev/null, never the caller's.
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("start %s: %w", f.cfg.Exe, err)
	}
	f.started.Add(1)
	h := &helper{pid: cmd.Process.Pid, in: inW, calls: map[uint64]*call{}}
	h.start, _ = procStart(fmt.Sprintf("/proc/%d/stat", h.pid))
	f.live[h] = true // f.mu is held: spawn is called from current
	go f.read(h, outR, cmd)
	return h, nil
}

// read takes the helper's answers until it exits, then reaps it.
func (f *HelperFS) read(h *helper, out *os.File, cmd *exec.Cmd) {
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r helperReply
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			break
		}
		h.mu.Lock()
		c := h.calls[r.ID]
		switch {
		case c == nil:
		case r.Started:
			c.tid = r.TID
		default:
			delete(h.calls, r.ID)
			c.done <- r
		}
		h.mu.Unlock()
	}
	out.Close()
	f.retire(h)
	err := cmd.Wait()
	f.mu.Lock()
	delete(f.live, h)
	f.mu.Unlock()
	h.mu.Lock()
	if err == nil {
		err = errors.New("exit status 0")
	}
	h.dead = fmt.Errorf("helper %d exited: %w", h.pid, err)
	for id, c := range h.calls {
		delete(h.calls, id)
		c.done <- helperReply{ID: id, Err: &helperErr{Msg: h.dead.Error(), Helper: true}}
	}
	h.mu.Unlock()
}

// cloexecInherited marks every descriptor above stderr close-on-exec.
// Ours are already (Go opens everything O_CLOEXEC), but one our caller
// passed down without the flag (a pipe of a supervisor's) would reach the
// helper, and a stuck helper would hold it open after we exit.
func cloexecInherited() {
	if unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	entries, err := os.ReadDir("/proc/self/fd") // kernels before 5.11
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
}

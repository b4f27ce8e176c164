package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// Linux).
const clockTick = 10 * time.Millisecond

// procCPU returns the CPU time, user and system, that the process pid has
// used so far, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of process %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15, the 12th and 13th after it.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields after the name", pid, len(fields))
	}
	utime, err := strconv.ParseInt(fields[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse utime of process %d: %w", pid, err)
	}
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse stime of process %d: %w", pid, err)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// procRSS returns the resident set size of the process pid in bytes, from
// VmRSS in /proc/<pid>/status.
func procRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		rest, ok := strings.CutPrefix(lines.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmRSS of process %d: %w", pid, err)
		}
		return kb << 10, nil
	}
	if err := lines.Err(); err != nil {
		return 0, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	return 0, fmt.Errorf("process %d has no VmRSS", pid)
}

// sumOver adds up measure over every pid.
func sumOver[T int64 | time.Duration](pids []int, measure func(int) (T, error)) (T, error) {
	var total T
	for _, pid := range pids {
		v, err := measure(pid)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
}

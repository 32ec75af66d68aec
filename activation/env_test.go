package activation

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseListenEnv(t *testing.T) {
	const pid = 4242
	tests := []struct {
		name                string
		listenPID, fds, fdn string
		want                []string
		wantReason          string // when want is empty and there is no error
		wantErr             string // a substring of the error
	}{
		{name: "nothing", wantReason: "LISTEN_PID is not set"},
		{name: "no LISTEN_PID", fds: "2", fdn: "app:app", wantReason: "LISTEN_PID is not set"},
		{name: "other process", listenPID: "17", fds: "1", wantReason: "LISTEN_PID=17 is another process, this is 4242"},
		{name: "no LISTEN_FDS", listenPID: "4242", wantReason: "LISTEN_FDS is not set"},
		{name: "zero fds", listenPID: "4242", fds: "0", wantReason: "LISTEN_FDS=0"},
		{name: "unnamed", listenPID: "4242", fds: "2", want: []string{"unknown", "unknown"}},
		{name: "named", listenPID: "4242", fds: "3", fdn: "app:app:admin", want: []string{"app", "app", "admin"}},
		{name: "empty name kept", listenPID: "4242", fds: "2", fdn: "app:", want: []string{"app", ""}},
		{name: "bad pid", listenPID: "x", fds: "1", wantErr: `LISTEN_PID="x" is not a process id`},
		{name: "zero pid", listenPID: "0", fds: "1", wantErr: `LISTEN_PID="0" is not a process id`},
		{name: "bad fds", listenPID: "4242", fds: "two", wantErr: `LISTEN_FDS="two" is not a number of fds`},
		{name: "negative fds", listenPID: "4242", fds: "-1", wantErr: `LISTEN_FDS="-1"`},
		{name: "too many fds", listenPID: "4242", fds: "99999999", wantErr: "more than 65536 fds"},
		{name: "too few names", listenPID: "4242", fds: "2", fdn: "app", wantErr: "LISTEN_FDNAMES has 1 names for LISTEN_FDS=2"},
		{name: "too many names", listenPID: "4242", fds: "1", fdn: "a:b", wantErr: "LISTEN_FDNAMES has 2 names for LISTEN_FDS=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason, err := parseListenEnv(pid, tt.listenPID, tt.fds, tt.fdn)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseListenEnv(%q, %q, %q) error = %v, want one containing %q", tt.listenPID, tt.fds, tt.fdn, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseListenEnv(%q, %q, %q) error = %v, want nil", tt.listenPID, tt.fds, tt.fdn, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("parseListenEnv(%q, %q, %q) names\n got: %q\nwant: %q", tt.listenPID, tt.fds, tt.fdn, got, tt.want)
			}
			if len(tt.want) == 0 && reason != tt.wantReason {
				t.Errorf("parseListenEnv(%q, %q, %q) reason\n got: %q\nwant: %q", tt.listenPID, tt.fds, tt.fdn, reason, tt.wantReason)
			}
		})
	}
}

func FuzzParseListenEnv(f *testing.F) {
	f.Add(1, "1", "2", "app:app")
	f.Add(1, "1", "1", "")
	f.Add(7, "7", "3", "a::b")
	f.Add(1, "2", "1", "x")
	f.Add(1, "1", "-3", "")
	f.Add(1, "1", "65537", "")
	f.Fuzz(func(t *testing.T, pid int, listenPID, fds, fdn string) {
		names, reason, err := parseListenEnv(pid, listenPID, fds, fdn)
		if err != nil {
			if names != nil || reason != "" {
				t.Fatalf("error %v with names %q and reason %q", err, names, reason)
			}
			return
		}
		if len(names) == 0 {
			if reason == "" {
				t.Fatal("no names and no reason")
			}
			return
		}
		n, aerr := strconv.Atoi(fds)
		if aerr != nil || n != len(names) || n > maxListenFDs {
			t.Fatalf("LISTEN_FDS=%q gave %d names", fds, len(names))
		}
		if p, _ := strconv.Atoi(listenPID); p != pid {
			t.Fatalf("LISTEN_PID=%q for pid %d gave names", listenPID, pid)
		}
		for _, name := range names {
			if strings.Contains(name, ":") {
				t.Fatalf("name %q contains ':'", name)
			}
		}
		if fdn != "" && strings.Join(names, ":") != fdn {
			t.Fatalf("names %q do not join back to LISTEN_FDNAMES=%q", names, fdn)
		}
	})
}

func TestParseInstance(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{in: "1", want: 1},
		{in: "12", want: 12},
		{in: "", wantErr: "CORRAL_INSTANCE is not set"},
		{in: "0", wantErr: `CORRAL_INSTANCE="0": want an instance number from 1 up`},
		{in: "-2", wantErr: `CORRAL_INSTANCE="-2"`},
		{in: "one", wantErr: `CORRAL_INSTANCE="one"`},
		{in: " 1", wantErr: `CORRAL_INSTANCE=" 1"`},
	}
	for _, tt := range tests {
		got, err := parseInstance(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseInstance(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseInstance(%q) = %d, %v; want %d, nil", tt.in, got, err, tt.want)
		}
	}
	if _, err := parseInstance(""); !errors.Is(err, ErrNoInstance) {
		t.Errorf("parseInstance(\"\") error = %v, want ErrNoInstance", err)
	}
}

func FuzzParseInstance(f *testing.F) {
	for _, s := range []string{"", "1", "0", "-1", "+3", "007", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseInstance(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("parseInstance(%q) = %d with error %v", s, n, err)
			}
			return
		}
		if n < 1 {
			t.Fatalf("parseInstance(%q) = %d, want >= 1", s, n)
		}
		if m, _ := strconv.Atoi(s); m != n {
			t.Fatalf("parseInstance(%q) = %d, want %d", s, n, m)
		}
	})
}

func TestStopTimeout(t *testing.T) {
	tests := []struct {
		env  string
		want time.Duration
	}{
		{"", DefaultStopTimeout},
		{"20s", 20 * time.Second},
		{"1m30s", 90 * time.Second},
		{"250ms", 250 * time.Millisecond},
		{"30", DefaultStopTimeout},
		{"infinity", DefaultStopTimeout},
		{"0s", DefaultStopTimeout},
		{"-5s", DefaultStopTimeout},
	}
	for _, tt := range tests {
		t.Setenv("CORRAL_STOP_TIMEOUT", tt.env)
		if got := StopTimeout(); got != tt.want {
			t.Errorf("CORRAL_STOP_TIMEOUT=%q: StopTimeout() = %v, want %v", tt.env, got, tt.want)
		}
	}
}

func FuzzParseStopTimeout(f *testing.F) {
	for _, s := range []string{"", "30s", "1h", "-1s", "0", "1.5m", "9999999999h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d := parseStopTimeout(s); d <= 0 {
			t.Fatalf("parseStopTimeout(%q) = %v, want > 0", s, d)
		}
	})
}

func TestInstanceAndPool(t *testing.T) {
	t.Setenv("CORRAL_INSTANCE", "3")
	t.Setenv("CORRAL_POOL", "app")
	if n, err := Instance(); n != 3 || err != nil {
		t.Errorf("Instance() = %d, %v; want 3, nil", n, err)
	}
	if got := Pool(); got != "app" {
		t.Errorf("Pool() = %q, want %q", got, "app")
	}
}

func TestDrainBudget(t *testing.T) {
	tests := []struct{ stop, want time.Duration }{
		{30 * time.Second, 29 * time.Second},
		{5 * time.Second, 4500 * time.Millisecond},
		{10 * time.Second, 9 * time.Second},
		{300 * time.Millisecond, 270 * time.Millisecond},
		{2 * time.Minute, 119 * time.Second},
	}
	for _, tt := range tests {
		if got := drainBudget(tt.stop); got != tt.want {
			t.Errorf("drainBudget(%v) = %v, want %v", tt.stop, got, tt.want)
		}
	}
}

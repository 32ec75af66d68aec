package pool

import (
	"context"
	"os"
	"testing"
)

func TestUnitOfCgroup(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"0::/system.slice/system-app.slice/app@3.service\n", "app@3.service"},
		{"0::/system.slice/corral.service\n", "corral.service"},
		{"0::/user.slice/user-1000.slice/user@1000.service/app.slice/app@1.service\n", "user@1000.service"},
		{"0::/user.slice/user-1000.slice/session-4.scope\n", "session-4.scope"},
		{"0::/\n", ""},
		{"0::/../../machine.slice/x.scope\n", ""},
		{"0::/system.slice/mine\n", ""},
		{"12:memory:/x\n1:name=systemd:/system.slice/system-web.slice/web@2.service\n0::/\n", "web@2.service"},
		{"12:pids:/system.slice/a.service\n1:name=systemd:/system.slice/b.service\n", "b.service"},
	} {
		got, err := unitOfCgroup([]byte(c.in))
		if err != nil || got != c.want {
			t.Errorf("unitOfCgroup(%q) = %q, %v, want %q", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "garbage", "3:cpu:/x\n"} {
		if u, err := unitOfCgroup([]byte(in)); err == nil {
			t.Errorf("unitOfCgroup(%q) = %q, want an error", in, u)
		}
	}
}

func TestProcessUnit(t *testing.T) {
	if _, err := ProcessUnit(context.Background(), uint32(os.Getpid())); err != nil {
		t.Errorf("ProcessUnit(self): %v", err)
	}
	if _, err := ProcessUnit(context.Background(), 0); err == nil {
		t.Error("ProcessUnit(0): no error")
	}
	if _, err := ProcessUnit(context.Background(), 1<<30); err == nil {
		t.Error("ProcessUnit of no process: no error")
	}
}

func FuzzUnitOfCgroup(f *testing.F) {
	f.Add([]byte("0::/system.slice/system-app.slice/app@3.service\n"))
	f.Add([]byte("1:name=systemd:/a.slice/b.service\n0::/..\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := unitOfCgroup(data)
		if err != nil && u != "" {
			t.Fatalf("unit %q with error %v", u, err)
		}
		if len(u) > len(data) {
			t.Fatalf("unit %q longer than its input", u)
		}
	})
}

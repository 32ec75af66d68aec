package api

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestStoreReply: a reply is stored in the struct of its signature, and a
// reply of another shape (a corrald of another version) says what to do.
func TestStoreReply(t *testing.T) {
	// godbus hands over a struct as []any, in field order.
	row := []any{"app", uint32(1), "app@1.service", "running", "active", "running", uint32(7),
		uint64(1), uint32(2), uint64(3), uint64(4), ""}
	var ws []InstanceInfo
	if err := storeReply("ListInstances", []any{[][]any{append(row, true, uint32(5), true, true, uint32(2), "/srv/app/releases/3")}}, &ws); err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].Unit != "app@1.service" || ws[0].PID != 7 || !ws[0].Messages || ws[0].Queued != 5 || !ws[0].Cordoned || !ws[0].Spare || ws[0].StandsFor != 2 || ws[0].Release != "/srv/app/releases/3" {
		t.Errorf("stored %+v", ws)
	}

	err := storeReply("ListInstances", []any{[][]any{append(row, true, uint32(5), true, "/srv/app/releases/3")}}, &ws)
	for _, want := range []string{"corrald's answer to ListInstances is not the a(sussssututtsbubbus) this corral expects",
		"'sudo systemctl restart corral'"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a reply of an older corrald (no spare fields): %v, want %q", err, want)
		}
	}
}

// TestReloadStepTravels: a ReloadProgress body reads back as the step sent.
func TestReloadStepTravels(t *testing.T) {
	st := ReloadStep{Pool: "app", Index: 3, Phase: "failed", Took: 1500 * time.Millisecond, Err: "exit-code 1", Done: 2, Total: 4}
	if got, ok := reloadStep(ReloadStepBody(st)); !ok || got != st {
		t.Errorf("sent %+v, read %+v (%v)", st, got, ok)
	}
	if _, ok := reloadStep([]any{"app", uint32(3)}); ok {
		t.Error("a short body was read as a step")
	}
}

// TestDeployStepTravels: a DeployProgress body reads back as the step sent.
func TestDeployStepTravels(t *testing.T) {
	st := DeployStep{Pool: "shop", Index: 3, Phase: "rolling back", Release: "/srv/shop/releases/41", Took: 1500 * time.Millisecond, Err: "crashed", Done: 2, Total: 4}
	if got, ok := deployStep(DeployStepBody(st)); !ok || got != st {
		t.Errorf("sent %+v, read %+v (%v)", st, got, ok)
	}
	if _, ok := deployStep([]any{"shop", uint32(3)}); ok {
		t.Error("a short body read as a step")
	}
	rep := DeployReport{Pool: "shop", From: "/r/41", To: "/r/42", RolledBack: true, Instance: 3, Reason: "crashed after it was ready (exited with status 2)", Log: "journalctl -u shop@3.service"}
	if err := rolledBack(rep); !errors.Is(err, ErrRolledBack) || err.Error() != "deploy rolled back: shop@3: crashed after it was ready (exited with status 2); the pool runs /r/41 again; log: journalctl -u shop@3.service" {
		t.Errorf("rolledBack = %v", err)
	}
}

// TestDeployReplyTravels: the reply of Deploy and Rollback, (ssbuss), reads
// back as the report; one that says rolled_back comes with an error
// wrapping ErrRolledBack; a reply of another shape says what to do.
func TestDeployReplyTravels(t *testing.T) {
	rep, err := deployReport("Deploy", "shop", []any{"/r/41", "/r/42", false, uint32(0), "", ""})
	if err != nil || rep != (DeployReport{Pool: "shop", From: "/r/41", To: "/r/42"}) {
		t.Errorf("a good deploy: %+v, %v", rep, err)
	}
	rep, err = deployReport("Deploy", "shop", []any{"/r/41", "/r/42", true, uint32(3), "crashed after it was ready (exited with status 2)", "journalctl -u shop@3.service"})
	if want := (DeployReport{Pool: "shop", From: "/r/41", To: "/r/42", RolledBack: true, Instance: 3,
		Reason: "crashed after it was ready (exited with status 2)", Log: "journalctl -u shop@3.service"}); rep != want {
		t.Errorf("a deploy rolled back: %+v, want %+v", rep, want)
	}
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "shop@3: crashed after it was ready") {
		t.Errorf("a deploy rolled back: %v, want an error wrapping ErrRolledBack", err)
	}
	// The one struct an earlier build replied with.
	_, err = deployReport("Rollback", "shop", []any{[]any{"shop", "/r/41", "/r/42", false, uint32(0), "", ""}})
	if err == nil || !strings.Contains(err.Error(), "corrald's answer to Rollback is not the ssbuss this corral expects") {
		t.Errorf("a reply of another shape: %v", err)
	}
}

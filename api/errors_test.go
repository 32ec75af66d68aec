package api

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestErrorNamesRoundTrip: every sentinel travels as its own name and comes
// back as an error errors.Is takes for it, with corrald's message; a name
// the client does not know is ErrFailed.
func TestErrorNamesRoundTrip(t *testing.T) {
	names := map[string]bool{}
	for _, e := range busErrors {
		err := fmt.Errorf("scale app: %w", e.err)
		name := ErrorName(err)
		back := FromErrorName(name, err.Error())
		if !errors.Is(back, e.err) || back.Error() != err.Error() {
			t.Errorf("%v: travels as %s, comes back as %v (%T)", e.err, name, back, back)
		}
		if e.err == ErrOtherPool && !errors.Is(back, ErrDenied) {
			t.Errorf("ErrOtherPool came back as %v, not also ErrDenied", back)
		}
		names[name] = true
	}
	if ErrorName(errors.New("disk full")) != ErrorName(ErrFailed) {
		t.Errorf("an error of no sentinel travels as %s", ErrorName(errors.New("disk full")))
	}
	if !errors.Is(FromErrorName("org.example.Unknown", "x"), ErrFailed) {
		t.Error("an unknown error name is not ErrFailed")
	}
	// Each corral error name stands for one sentinel.
	seen := map[string]error{}
	for _, e := range busErrors {
		if prev, ok := seen[e.name]; ok && prev != e.err {
			t.Errorf("%s stands for both %v and %v", e.name, prev, e.err)
		}
		seen[e.name] = e.err
	}
}

// TestErrorNamesDocumented: docs/corrald.md names every error corrald
// returns.
func TestErrorNamesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/corrald.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range busErrors {
		if short, ok := strings.CutPrefix(e.name, "org.corral.Corral1.Error"); ok && !strings.Contains(string(doc), "`"+short+"`") && !strings.Contains(string(doc), e.name) {
			t.Errorf("docs/corrald.md does not name %s", e.name)
		}
	}
}

package message

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestEncodeRead(t *testing.T) {
	frames := []Frame{
		{ID: "a-1", Message: "flush-cache"},
		{ID: "a-1", Reply: "flushed <12> & more\nlines"},
		{ID: "a-2", Error: "unknown command"},
		{Error: "refused"},
		{ID: "a-3", Message: ""},
		{ID: "a-4", Message: strings.Repeat("é", MaxText/2)},
	}
	var stream bytes.Buffer
	for _, f := range frames {
		b, err := Encode(f)
		if err != nil {
			t.Fatalf("Encode(%+v): %v", f, err)
		}
		if bytes.Count(b, []byte("\n")) != 1 || b[len(b)-1] != '\n' {
			t.Fatalf("Encode(%+v) = %q: want one line", f, b)
		}
		stream.Write(b)
	}
	if got, _ := Encode(frames[1]); !bytes.Contains(got, []byte("<12> &")) {
		t.Errorf("Encode escapes HTML: %s", got)
	}
	r := NewReader(&stream)
	for _, want := range frames {
		got, err := r.Read()
		if err != nil || got != want {
			t.Fatalf("Read = %+v, %v; want %+v", got, err, want)
		}
	}
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("Read at end = %v, want io.EOF", err)
	}
}

func TestIsMessage(t *testing.T) {
	for f, want := range map[Frame]bool{
		{ID: "1", Message: "x"}: true,
		{ID: "1"}:               true, // the empty message
		{ID: "1", Reply: "x"}:   false,
		{ID: "1", Error: "x"}:   false,
		{Error: "x"}:            false,
		{Message: "x"}:          false,
	} {
		if f.IsMessage() != want {
			t.Errorf("%+v.IsMessage() = %v", f, !want)
		}
	}
}

func TestEncodeLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Frame
		want error
	}{
		{"text over MaxText", Frame{ID: "1", Message: strings.Repeat("x", MaxText+1)}, ErrTooLarge},
		{"reply over MaxText", Frame{ID: "1", Reply: strings.Repeat("x", MaxText+1)}, ErrTooLarge},
		{"escapes past MaxLine", Frame{ID: "1", Message: strings.Repeat("\x01", MaxText)}, ErrTooLarge},
		{"not UTF-8", Frame{ID: "1", Message: "\xff"}, ErrNotText},
	} {
		_, err := Encode(tc.f)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Encode = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := Encode(Frame{ID: "1", Message: strings.Repeat("x", MaxText)}); err != nil {
		t.Errorf("Encode of MaxText bytes: %v", err)
	}
}

func TestReadSkipsBadLines(t *testing.T) {
	long := `{"id":"x","reply":"` + strings.Repeat("y", MaxLine) + "\"}\n"
	in := "not json\n" + long + `{"id":"2","reply":"ok"}` + "\n" + `[1,2]` + "\n" +
		`{"id":"3","reply":"ok","future":true}` + "\n" + `{"id":"4","reply":"unfinish`
	r := NewReader(strings.NewReader(in))
	var got []string
	for {
		f, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			if !errors.Is(err, ErrBadLine) {
				t.Fatalf("Read: %v, want ErrBadLine", err)
			}
			got = append(got, "bad")
			continue
		}
		got = append(got, f.ID)
	}
	if want := "bad bad 2 bad 3"; strings.Join(got, " ") != want {
		t.Errorf("frames = %q, want %q", strings.Join(got, " "), want)
	}
}

// FuzzRead: no input makes a Reader panic or loop, every frame it returns
// encodes again, and it stops at the end.
func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"id":"1","message":"ping"}` + "\n"))
	f.Add([]byte("{\"id\":\"1\",\"reply\":\"\\u00e9\"}\n\n\nnull\n"))
	f.Add([]byte(`{"id":1}` + "\n" + `{"error":"x"`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		for n := 0; ; n++ {
			if n > len(in)+1 {
				t.Fatalf("more frames than lines in %q", in)
			}
			fr, err := r.Read()
			if err == io.EOF {
				return
			}
			if err != nil {
				if !errors.Is(err, ErrBadLine) {
					t.Fatalf("Read: %v", err)
				}
				continue
			}
			if CheckText(fr.Message) == nil && CheckText(fr.Reply) == nil && CheckText(fr.Error) == nil {
				b, err := Encode(fr)
				if err != nil {
					continue // escapes may exceed MaxLine
				}
				back, err := NewReader(bytes.NewReader(b)).Read()
				if err != nil || back != fr {
					t.Fatalf("round trip of %+v: %+v, %v", fr, back, err)
				}
			}
		}
	})
}

// FuzzTemplate: a template's line is the line Encode makes.
func FuzzTemplate(f *testing.F) {
	f.Add("flush <cache> & more\n", "ab12-7")
	f.Add("é\u2028\x01", "x")
	f.Add("é\u2028\"", "")
	f.Fuzz(func(t *testing.T, text, id string) {
		tpl, err := NewTemplate(text)
		if err != nil {
			if CheckMessage(text) == nil {
				t.Fatalf("NewTemplate(%q): %v", text, err)
			}
			return
		}
		got, err := tpl.Line(id)
		want, werr := Encode(Frame{ID: id, Message: text})
		if err != nil {
			return // an id Line refuses, or too long
		}
		if werr != nil || string(got) != string(want) {
			t.Fatalf("Line(%q) = %q, Encode = %q, %v", id, got, want, werr)
		}
	})
}

// FuzzSplitter: the frames a Splitter finds do not depend on how the
// stream is cut into pieces, and are those a Reader finds.
func FuzzSplitter(f *testing.F) {
	f.Add([]byte(`{"id":"1","message":"ping"}`+"\n"+`{"id":"2","reply":"x"}`+"\n"), uint16(5))
	f.Add([]byte("{\"id\":\"1\"}\n\n\nnull\n{\"id\""), uint16(1))
	f.Add(append(bytes.Repeat([]byte("x"), MaxLine+3), "\n{\"id\":\"z\"}\n"...), uint16(4000))
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		type item struct {
			f   Frame
			bad bool
		}
		var want []item
		r := NewReader(bytes.NewReader(in))
		for {
			fr, err := r.Read()
			if err == io.EOF {
				break
			}
			want = append(want, item{fr, err != nil})
		}
		var got []item
		var s Splitter
		step := int(cut)%97 + 1
		for p := in; len(p) > 0; {
			n := min(step, len(p))
			s.Write(p[:n])
			p = p[n:]
			step = step*7%97 + 1
			for {
				fr, ok, err := s.Next()
				if !ok {
					break
				}
				if err != nil && !errors.Is(err, ErrBadLine) {
					t.Fatalf("Next: %v", err)
				}
				got = append(got, item{fr, err != nil})
			}
		}
		if len(got) != len(want) {
			t.Fatalf("Splitter found %d frames, Reader %d", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("frame %d: Splitter %+v, Reader %+v", i, got[i], want[i])
			}
		}
	})
}

// TestPingTemplate: a ping is a message "ping" with "ping":true, which
// Read gives back as a Frame with Ping set and which IsMessage.
func TestPingTemplate(t *testing.T) {
	line, err := PingTemplate().Line("c-7")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(line), `{"id":"c-7","message":"ping","ping":true}`+"\n"; got != want {
		t.Errorf("ping line %q, want %q", got, want)
	}
	f, err := NewReader(strings.NewReader(string(line))).Read()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Frame{ID: "c-7", Message: "ping", Ping: true}); f != want || !f.IsMessage() {
		t.Errorf("read back %+v (IsMessage %v), want %+v", f, f.IsMessage(), want)
	}
}

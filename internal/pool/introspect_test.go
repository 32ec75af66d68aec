package pool

import (
	"encoding/xml"
	"reflect"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/corral-pool/corral/api"
)

// TestIntrospection: the introspection data corrald serves says what its
// methods take and give, method by method and argument by argument, and
// the bodies of the ReloadProgress and DeployProgress signals are the ones
// it declares.
func TestIntrospection(t *testing.T) {
	var iface struct {
		Methods []struct {
			Name string `xml:"name,attr"`
			Args []struct {
				Type      string `xml:"type,attr"`
				Direction string `xml:"direction,attr"`
			} `xml:"arg"`
		} `xml:"method"`
		Signals []struct {
			Name string `xml:"name,attr"`
			Args []struct {
				Type string `xml:"type,attr"`
			} `xml:"arg"`
		} `xml:"signal"`
	}
	if err := xml.Unmarshal([]byte(api.Introspection), &iface); err != nil {
		t.Fatal(err)
	}
	senderT := reflect.TypeFor[godbus.Sender]()
	errT := reflect.TypeFor[*godbus.Error]()
	served := map[string]bool{}
	st := reflect.TypeFor[*server]()
	for i := range st.NumMethod() {
		served[st.Method(i).Name] = true
	}
	for _, m := range iface.Methods {
		meth, ok := st.MethodByName(m.Name)
		if !ok {
			t.Errorf("%s is declared but not served", m.Name)
			continue
		}
		delete(served, m.Name)
		var in, out []string
		for _, a := range m.Args {
			if a.Direction == "out" {
				out = append(out, a.Type)
			} else {
				in = append(in, a.Type)
			}
		}
		var gin, gout []string
		for k := 1; k < meth.Type.NumIn(); k++ { // 0 is the receiver
			if p := meth.Type.In(k); p != senderT {
				gin = append(gin, godbus.SignatureOfType(p).String())
			}
		}
		for k := range meth.Type.NumOut() {
			if r := meth.Type.Out(k); r != errT {
				gout = append(gout, godbus.SignatureOfType(r).String())
			}
		}
		if strings.Join(in, ",") != strings.Join(gin, ",") || strings.Join(out, ",") != strings.Join(gout, ",") {
			t.Errorf("%s: declared (%s) -> (%s), served (%s) -> (%s)", m.Name,
				strings.Join(in, ","), strings.Join(out, ","), strings.Join(gin, ","), strings.Join(gout, ","))
		}
	}
	for name := range served {
		if name[0] >= 'A' && name[0] <= 'Z' {
			t.Errorf("%s is served but not declared", name)
		}
	}
	// The progress signals' bodies, as sent.
	bodies := map[string][]any{
		api.ReloadProgress: api.ReloadStepBody(api.ReloadStep{}),
		api.DeployProgress: api.DeployStepBody(api.DeployStep{}),
	}
	for _, s := range iface.Signals {
		body, ok := bodies[s.Name]
		if !ok {
			continue
		}
		delete(bodies, s.Name)
		var want, got []string
		for _, a := range s.Args {
			want = append(want, a.Type)
		}
		for _, v := range body {
			got = append(got, godbus.SignatureOf(v).String())
		}
		if strings.Join(want, "") != strings.Join(got, "") {
			t.Errorf("%s: declared %v, sent %v", s.Name, want, got)
		}
	}
	for name := range bodies {
		t.Errorf("the signal %s is sent but not declared", name)
	}
}

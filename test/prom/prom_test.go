package prom

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseQuery(t *testing.T) {
	vec := `{"status":"success","data":{"resultType":"vector","result":[` +
		`{"metric":{"__name__":"up","job":"test","instance":"127.0.0.1:9"},"value":[1700000000.123,"1"]},` +
		`{"metric":{"__name__":"x"},"value":[1700000000.123,"NaN"]}]}}`
	ss, err := parseQuery("q", []byte(vec))
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 2 || ss[0].Value != 1 || ss[0].Labels["instance"] != "127.0.0.1:9" || !math.IsNaN(ss[1].Value) {
		t.Errorf("vector: %+v", ss)
	}
	ss, err = parseQuery("q", []byte(`{"status":"success","data":{"resultType":"scalar","result":[1700000000,"+Inf"]}}`))
	if err != nil || len(ss) != 1 || !math.IsInf(ss[0].Value, 1) {
		t.Errorf("scalar: %+v, %v", ss, err)
	}
	_, err = parseQuery("q{", []byte(`{"status":"error","errorType":"bad_data","error":"1:3: parse error"}`))
	if err == nil || !strings.Contains(err.Error(), "bad_data: 1:3: parse error") {
		t.Errorf("error: %v", err)
	}
	_, err = parseQuery("q[1m]", []byte(`{"status":"success","data":{"resultType":"matrix","result":[]}}`))
	if err == nil || !strings.Contains(err.Error(), "matrix") {
		t.Errorf("matrix: %v", err)
	}
}

func TestYAML(t *testing.T) {
	got := yaml(Config{Targets: []string{"127.0.0.1:1", "[::1]:2"}, Interval: 1500 * time.Millisecond, MetricsPath: "/m", Job: "j"})
	want := `global:
  scrape_interval: 1500ms
  scrape_timeout: 1500ms
scrape_configs:
  - job_name: "j"
    metrics_path: "/m"
    static_configs:
      - targets: ["127.0.0.1:1", "[::1]:2"]
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestParseMatrix(t *testing.T) {
	body := `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pool":"shop"},"values":[[100,"1"],[102,"NaN"],[104,"2.5"]]}]}}`
	got, err := parseMatrix("q", []byte(body))
	want := []Series{{Labels: map[string]string{"pool": "shop"}, Points: [][2]float64{{100, 1}, {104, 2.5}}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseMatrix: %v, %v; want %v", got, err, want)
	}
	if _, err := parseMatrix("q", []byte(`{"status":"error","errorType":"bad_data","error":"parse error"}`)); err == nil || !strings.Contains(err.Error(), "parse error") {
		t.Errorf("parseMatrix of an error: %v", err)
	}
}

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/agent"
	"github.com/corral-pool/corral/internal/daemonconf"
)

// The --json documents of list and status (corral(1) documents them; keep
// the two in step). Unknown counters are null, never 0.
type listJSON struct {
	Pools []poolJSON `json:"pools"`
}

type poolJSON struct {
	Name      string         `json:"name"`
	State     string         `json:"state"`
	Desired   uint32         `json:"desired"`
	Running   uint32         `json:"running"`
	Balance   string         `json:"balance"`
	File      string         `json:"file"`
	Listen    []string       `json:"listen"`
	Drained   bool           `json:"drained"`         // corral drain: the HAProxy agent answers drain
	Steering  string         `json:"steering"`        // "on", "off: REASON", "disabled", "" (one socket for all)
	Agent     string         `json:"agent,omitempty"` // status: the agent's answer, when corral.toml sets [agent]
	Instances []instanceJSON `json:"instances"`
}

type instanceJSON struct {
	Name        string  `json:"name"` // "app@3"
	Unit        string  `json:"unit"` // "app@3.service"
	Index       uint32  `json:"index"`
	Phase       string  `json:"phase"`
	ActiveState string  `json:"active_state"`
	SubState    string  `json:"sub_state"`
	PID         *uint32 `json:"pid"`            // null: no process
	Since       *string `json:"since"`          // RFC 3339, when it last became active; null: never
	Uptime      *int64  `json:"uptime_seconds"` // null: not up
	Restarts    uint32  `json:"restarts"`
	MemoryBytes *uint64 `json:"memory_bytes"` // null: unknown
	CPUNSec     *uint64 `json:"cpu_nsec"`     // null: unknown
	Reason      string  `json:"reason"`
	Messages    bool    `json:"messages"`          // its worker is connected for messages
	Queued      uint32  `json:"queued"`            // connections waiting in its socket's queue (not-accepting)
	Cordoned    bool    `json:"cordoned"`          // corral cordon: no new connections
	Spare       bool    `json:"spare"`             // one of the pool's spares: out of rotation
	StandsFor   *string `json:"stands_for"`        // the instance whose place a spare has taken; null: none
	Release     string  `json:"release,omitempty"` // the release it runs (corral deploy)
}

func toJSON(p api.PoolInfo, ins []api.InstanceInfo, now time.Time) poolJSON {
	j := poolJSON{Name: p.Name, State: p.State, Desired: p.Desired, Running: p.Running,
		Balance: p.Balance, File: p.File, Listen: p.Listen, Drained: p.Drained, Steering: p.Steering, Instances: []instanceJSON{}}
	if j.Listen == nil {
		j.Listen = []string{}
	}
	for _, in := range ins {
		ij := instanceJSON{Name: instanceName(in), Unit: in.Unit, Index: in.Index, Phase: in.Phase,
			ActiveState: in.ActiveState, SubState: in.SubState, Restarts: in.Restarts, Reason: in.Reason,
			Messages: in.Messages, Queued: in.Queued, Cordoned: in.Cordoned, Spare: in.Spare, Release: in.Release}
		if in.StandsFor != 0 {
			name := api.InstanceTarget(in.Pool, int(in.StandsFor))
			ij.StandsFor = &name
		}
		if in.PID != 0 {
			pid := in.PID
			ij.PID = &pid
		}
		if in.SinceUSec != 0 {
			s := in.Since().UTC().Format(time.RFC3339)
			ij.Since = &s
		}
		if hasUptime(in) {
			u := int64(now.Sub(in.Since()) / time.Second)
			ij.Uptime = &u
		}
		if in.MemoryBytes != api.Unknown {
			m := in.MemoryBytes
			ij.MemoryBytes = &m
		}
		if in.CPUNSec != api.Unknown {
			c := in.CPUNSec
			ij.CPUNSec = &c
		}
		j.Instances = append(j.Instances, ij)
	}
	return j
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// snapshot is every pool corrald manages, or one, with its instances.
type snapshot struct {
	at        time.Time
	pools     []api.PoolInfo
	instances map[string][]api.InstanceInfo
}

// take asks corrald for the pools (only name's, if set) and their
// instances: one ListPools, one ListInstances per pool.
func take(ctx context.Context, env *Env, corrald api.API, name string) (*snapshot, error) {
	pools, err := corrald.ListPools(ctx)
	if err != nil {
		return nil, apiError(env, "list pools", name, err)
	}
	if name != "" {
		var only []api.PoolInfo
		for _, p := range pools {
			if p.Name == name {
				only = append(only, p)
			}
		}
		if len(only) == 0 {
			return nil, noPool(env, name)
		}
		pools = only
	}
	s := &snapshot{pools: pools, instances: map[string][]api.InstanceInfo{}}
	for _, p := range pools {
		ins, err := corrald.ListInstances(ctx, p.Name)
		if err != nil {
			return nil, apiError(env, "list instances of "+p.Name, p.Name, err)
		}
		s.instances[p.Name] = ins
	}
	s.at = env.now()
	return s, nil
}

// listHeader is the header of list's and monit's table; cpu names the
// CPU column.
func listHeader(cpu string) []string {
	return []string{"POOL/INSTANCE", "STATE", "PID", "UPTIME", "RESTARTS", cpu, "MEMORY"}
}

// listRows returns a pool line and a line per instance for every pool;
// cpu fills the CPU column.
func listRows(s *snapshot, cpu func(api.InstanceInfo) string) []row {
	var rows []row
	for _, p := range s.pools {
		rows = append(rows, row{cells: []string{p.Name, p.State}, note: poolNote(p), alert: alert(p.State)})
		for _, in := range s.instances[p.Name] {
			rows = append(rows, row{cells: []string{instanceName(in), phaseCell(in), pidCell(in.PID),
				uptimeCell(in, s.at), fmt.Sprint(in.Restarts), cpu(in), memory(in.MemoryBytes)},
				alert: alert(in.Phase)})
		}
	}
	return rows
}

// runList is `corral list`: every pool and its instances, like pm2 ls.
func runList(ctx context.Context, env *Env, args []string) error {
	opts, operands, err := parseOptions("list", args, option{long: "json"})
	if err != nil {
		return err
	}
	if len(operands) > 0 {
		return badUsage("list", "unexpected argument %q ('corral status %s' shows one pool)", operands[0], operands[0])
	}
	corrald, done, err := connect(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	s, err := take(ctx, env, corrald, "")
	if err != nil {
		return err
	}
	if opts["json"] != "" {
		doc := listJSON{Pools: []poolJSON{}}
		for _, p := range s.pools {
			doc.Pools = append(doc.Pools, toJSON(p, s.instances[p.Name], s.at))
		}
		return writeJSON(env.Stdout, doc)
	}
	if len(s.pools) == 0 {
		fmt.Fprintf(env.Stdout, "no pools: add a pool file to %s (see corral.toml(5)), then run 'sudo systemctl daemon-reload'\n", env.PoolDir)
		return nil
	}
	return writeTable(env.Stdout, listHeader("CPU"), listRows(s, func(in api.InstanceInfo) string { return cpuTime(in.CPUNSec) }), env.IsTerminal)
}

// runStatus is `corral status POOL`: one pool in detail, like pm2 show.
func runStatus(ctx context.Context, env *Env, args []string) error {
	opts, operands, err := parseOptions("status", args, option{long: "json"})
	if err != nil {
		return err
	}
	name, err := onePool("status", operands, "give one pool ('corral list' shows them all)")
	if err != nil {
		return err
	}
	corrald, done, err := connect(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	s, err := take(ctx, env, corrald, name)
	if err != nil {
		return err
	}
	p, ins := s.pools[0], s.instances[name]
	if opts["json"] != "" {
		j := toJSON(p, ins, s.at)
		j.Agent = agentAnswer(env, p)
		return writeJSON(env.Stdout, j)
	}
	w := env.Stdout
	state := p.State
	if env.IsTerminal && alert(state) {
		state = ansiAlert + state + ansiReset
	}
	fmt.Fprintf(w, "%s: %s\n", p.Name, state)
	fmt.Fprintf(w, "  file       %s\n", p.File)
	fmt.Fprintf(w, "  listen     %s\n", strings.Join(p.Listen, " "))
	fmt.Fprintf(w, "  balance    %s\n", p.Balance)
	if p.Steering != "" {
		fmt.Fprintf(w, "  steering   %s\n", steeringNote(p.Steering))
	}
	fmt.Fprintf(w, "  instances  desired %d, running %d\n", p.Desired, p.Running)
	if p.Drained {
		fmt.Fprintf(w, "  drained    yes: balancers send it no new connections ('corral undrain %s')\n", p.Name)
	}
	if a := agentAnswer(env, p); a != "" {
		fmt.Fprintf(w, "  agent      %s (what HAProxy's agent check hears)\n", a)
	}
	if len(ins) == 0 {
		fmt.Fprintln(w, "  no instances")
		return nil
	}
	if r := releasesLine(name, ins); r != "" {
		fmt.Fprintf(w, "  release    %s\n", r)
	}
	fmt.Fprintln(w)
	var rows []row
	var looping []string
	for _, in := range ins {
		since := "-"
		if hasUptime(in) {
			since = stamp(in.Since(), s.at)
		}
		rows = append(rows, row{cells: []string{in.Unit, phaseCell(in), in.ActiveState + "/" + in.SubState,
			pidCell(in.PID), since, uptimeCell(in, s.at), fmt.Sprint(in.Restarts),
			memory(in.MemoryBytes), cpuTime(in.CPUNSec), messagesCell(in), in.Reason}, alert: alert(in.Phase)})
		if crashLoop(in.Phase) {
			looping = append(looping, instanceName(in))
		}
	}
	header := []string{"UNIT", "PHASE", "ACTIVE/SUB", "PID", "SINCE", "UPTIME", "RESTARTS", "MEMORY", "CPU", "MSG", "REASON"}
	if err := writeTable(w, header, rows, env.IsTerminal); err != nil {
		return err
	}
	switch len(looping) {
	case 0:
	case 1:
		_, i, _ := api.ParseInstance(looping[0])
		fmt.Fprintf(w, "hint: %s is in crash-loop: see why with 'corral logs %s --instance %d'\n", looping[0], name, i)
	default:
		fmt.Fprintf(w, "hint: %s are in crash-loop: see why with 'corral logs %s'\n", strings.Join(looping, ", "), name)
	}
	return nil
}

// releasesLine says which release the instances of pool run, by release:
// "/srv/shop/releases/42 (4 instances)", or each with its instances when
// they differ (during a deploy); "" when none reports one.
func releasesLine(pool string, ins []api.InstanceInfo) string {
	var order []string
	by := map[string][]string{}
	for _, in := range ins {
		if in.Release == "" {
			continue
		}
		if by[in.Release] == nil {
			order = append(order, in.Release)
		}
		by[in.Release] = append(by[in.Release], instanceName(in))
	}
	switch len(order) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("%s (%d instance(s))", order[0], len(by[order[0]]))
	}
	var parts []string
	for _, r := range order {
		parts = append(parts, r+" ("+strings.Join(by[r], ", ")+")")
	}
	return strings.Join(parts, "; ")
}

// phaseCell is an instance's phase, with the queue of one that accepts
// no connection: "not-accepting, 12 queued".
// steeringNote explains PoolInfo.Steering.
func steeringNote(s string) string {
	switch {
	case s == "on":
		return "on: new connections go only to instances that serve (a program in the kernel)"
	case s == "disabled":
		return "disabled (steering = false): the kernel's hash picks each instance, even one that is down"
	}
	return s + "; the pool runs as plain reuseport"
}

func phaseCell(in api.InstanceInfo) string {
	ph := in.Phase
	if in.Phase == string(api.PhaseNotAccepting) {
		ph = fmt.Sprintf("%s, %d queued", in.Phase, in.Queued)
	}
	if in.Cordoned {
		ph += ", cordoned"
	}
	switch {
	case in.Spare && in.StandsFor != 0:
		ph += ", spare for " + api.InstanceTarget(in.Pool, int(in.StandsFor))
	case in.Spare:
		ph += ", spare"
	}
	return ph
}

// messagesCell says whether an instance's worker is connected for
// messages: yes, no (it runs and is not), or - (no process).
func messagesCell(in api.InstanceInfo) string {
	switch {
	case in.Messages:
		return "yes"
	case in.PID != 0:
		return "no"
	}
	return "-"
}

// agentAnswer is the HAProxy agent's answer for p without its newline, or
// "" when corral.toml sets no [agent] (or cannot be read: corrald says why).
func agentAnswer(env *Env, p api.PoolInfo) string {
	if env.DaemonConf == "" {
		return ""
	}
	c, err := daemonconf.Load(env.DaemonConf)
	if err != nil || c.Agent == "" {
		return ""
	}
	return strings.TrimSuffix(agent.Answer(p), "\n")
}

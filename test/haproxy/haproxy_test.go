package haproxy

import "testing"

// stat is `show stat` from HAProxy 2.6.12 (Debian 12), less the columns
// after uweight, with be/a drained by its agent and a quoted last_agt.
const stat = `# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,
fe,FRONTEND,,,0,1,262124,1,83,75,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,1,,,,0,1,0,0,0,0,,0,1,1,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,0,1,1,0,0,0,0,,,0,0,,,,,,,0,,,,,
be,a,0,0,2,3,,9,0,0,,0,,0,0,0,0,DRAIN (agent),50,1,0,0,0,12,0,,1,3,1,,0,,2,0,,0,L7OK,200,1,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,"via agent : down (a, b)",0,0,0,0,CHECKED,,0,Layer7 check passed,No status change,2,3,4,1,1,1,127.0.0.1:41000,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,50,
be,b,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,100,1,0,,,12,,,1,3,2,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,,127.0.0.1:41001,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,100,
be,BACKEND,0,0,0,1,26213,1,83,75,0,0,,0,0,0,0,UP,150,2,0,,0,12,0,,1,3,0,,1,,1,0,,1,,,,0,1,0,0,0,0,,,,1,0,0,0,0,0,0,0,,,0,0,0,1,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,1,0,0,0,,,0,0,0,1,0,,,,,150,
`

func TestParseStat(t *testing.T) {
	ss, err := ParseStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 2 {
		t.Fatalf("%d servers, want 2 (no frontend or backend lines): %+v", len(ss), ss)
	}
	a, b := ss[0], ss[1]
	if a.Backend != "be" || a.Name != "a" || a.Status != "DRAIN (agent)" || a.State() != "DRAIN" ||
		a.Weight != 50 || a.UserWeight != 50 || a.CurrentSessions != 2 || a.TotalSessions != 9 || a.LastChange != 12 {
		t.Errorf("be/a: %+v", a)
	}
	if a.CheckStatus != "L7OK" || a.CheckCode != "200" || a.CheckDesc != "Layer7 check passed" ||
		a.AgentStatus != "CHECKED" || a.AgentDesc != "No status change" || a.LastAgentCheck != "via agent : down (a, b)" ||
		a.AgentHealth != 1 || a.AgentRise != 1 || a.AgentFall != 1 || a.Addr != "127.0.0.1:41000" {
		t.Errorf("be/a's checks: %+v", a)
	}
	if b.Status != "no check" || b.State() != "no check" || b.Weight != 100 || b.Fields["iid"] != "3" {
		t.Errorf("be/b: %+v", b)
	}
}

func TestParseStatNoHeader(t *testing.T) {
	if _, err := ParseStat("Unknown command.\n"); err == nil {
		t.Error("no error for an answer without a header")
	}
}

package api

// Introspection is the D-Bus introspection data of Interface, as corrald
// serves it; TestIntrospection (internal/pool) holds corrald's methods to
// it, and docs/corrald.md describes each.
const Introspection = `<interface name="` + Interface + `">
  <method name="ListPools"><arg name="pools" type="a(ssuussasbus)" direction="out"/></method>
  <method name="ListInstances"><arg name="pool" type="s" direction="in"/><arg name="instances" type="a(sussssututtsbubbus)" direction="out"/></method>
  <method name="Scale"><arg name="pool" type="s" direction="in"/><arg name="spec" type="s" direction="in"/><arg name="count" type="u" direction="out"/></method>
  <method name="Start"><arg name="target" type="s" direction="in"/></method>
  <method name="Stop"><arg name="target" type="s" direction="in"/></method>
  <method name="Restart"><arg name="target" type="s" direction="in"/></method>
  <method name="Reload"><arg name="pool" type="s" direction="in"/></method>
  <method name="Deploy"><arg name="pool" type="s" direction="in"/><arg name="dir" type="s" direction="in"/><arg name="from" type="s" direction="out"/><arg name="to" type="s" direction="out"/><arg name="rolled_back" type="b" direction="out"/><arg name="instance" type="u" direction="out"/><arg name="reason" type="s" direction="out"/><arg name="log" type="s" direction="out"/></method>
  <method name="Rollback"><arg name="pool" type="s" direction="in"/><arg name="from" type="s" direction="out"/><arg name="to" type="s" direction="out"/><arg name="rolled_back" type="b" direction="out"/><arg name="instance" type="u" direction="out"/><arg name="reason" type="s" direction="out"/><arg name="log" type="s" direction="out"/></method>
  <method name="Apply"><arg name="changes" type="a(sss)" direction="out"/></method>
  <method name="Broadcast"><arg name="pool" type="s" direction="in"/><arg name="message" type="s" direction="in"/><arg name="wait_usec" type="t" direction="in"/><arg name="results" type="a(susss)" direction="out"/></method>
  <method name="Send"><arg name="instance" type="s" direction="in"/><arg name="message" type="s" direction="in"/><arg name="wait_usec" type="t" direction="in"/><arg name="results" type="a(susss)" direction="out"/></method>
  <method name="Drain"><arg name="pool" type="s" direction="in"/><arg name="timeout_usec" type="t" direction="in"/><arg name="left" type="i" direction="out"/><arg name="waited_usec" type="t" direction="out"/><arg name="watched" type="b" direction="out"/><arg name="told" type="b" direction="out"/></method>
  <method name="Undrain"><arg name="pool" type="s" direction="in"/></method>
  <method name="Cordon"><arg name="target" type="s" direction="in"/></method>
  <method name="Uncordon"><arg name="target" type="s" direction="in"/></method>
  <signal name="InstanceChanged"><arg name="pool" type="s"/><arg name="index" type="u"/><arg name="phase" type="s"/></signal>
  <signal name="CrashLoop"><arg name="pool" type="s"/><arg name="index" type="u"/><arg name="reason" type="s"/></signal>
  <signal name="ReloadProgress"><arg name="pool" type="s"/><arg name="index" type="u"/><arg name="phase" type="s"/><arg name="took_usec" type="t"/><arg name="error" type="s"/><arg name="done" type="u"/><arg name="total" type="u"/></signal>
  <signal name="DeployProgress"><arg name="pool" type="s"/><arg name="index" type="u"/><arg name="phase" type="s"/><arg name="release" type="s"/><arg name="took_usec" type="t"/><arg name="error" type="s"/><arg name="done" type="u"/><arg name="total" type="u"/></signal>
</interface>`

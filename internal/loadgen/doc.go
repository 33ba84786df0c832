// Package loadgen is an HTTP/1.1 load generator for hotcluster's tests and its
// benchmarks (scripts/bench). Its invariant: every round trip it
// attempts is counted exactly once, as a success or as a failure with a reason,
// and it never retries a request.
//
// # Why not net/http
//
// loadgen speaks HTTP/1.1 itself over a raw [net.Conn] instead of using
// [net/http.Transport]. When a server closes an idle keep-alive connection at
// the moment a request is sent on it, Transport silently retries the
// (idempotent) GET on a fresh connection. That retry hides exactly the failure
// a reload test must count: a worker that stops and drops a connection it had
// already accepted. Here a failure on a reused connection is counted as a
// failure (see [Result.FailuresReused]) and the client then reconnects for its
// next request.
//
// # Protocol
//
// Each client sends `GET <path> HTTP/1.1` with a Host header, reads the
// response with [net/http.ReadResponse] and reads the body in full (up to
// [MaxBodySize]). Without [Config.KeepAlive] every request carries
// `Connection: close` and uses a new connection. With it, a connection is
// reused until the server answers with `Connection: close` (which is normal and
// not a failure) or a round trip fails.
//
// # Bounds
//
// All traffic goes to loopback: [Run] rejects a TCP address whose host is not a
// loopback IP or "localhost". A run ends when its context is done,
// [Config.Duration] has elapsed or [Config.MaxRequests] round trips were
// attempted, whichever comes first; each round trip (dial included) is bounded
// by [Config.Timeout] and by the end of the run. Round trips cut short by the
// end of the run are not counted (see [Result.Aborted]). Memory grows with the
// successful round trips ([Result.Latencies], 8 bytes each) and with Clients
// times the run's length in [BucketWidth] buckets ([Result.Timeline], and
// [Result.BucketLatencies] when asked for).
package loadgen

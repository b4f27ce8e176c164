// Package loadtest holds Parley's load test and write-path benchmark (issue
// 13): a bounded concurrent run through the real HTTP/2 server on a SQLite
// file that asserts outcomes, never durations (TestLoad), and a benchmark
// that reports persisted sends per second, server CPU per send and read
// latency against a bare connect-go handler and the disk's fsync rate
// (BenchmarkWritePath). Everything is in the package's tests; this file
// only documents it.
package loadtest
